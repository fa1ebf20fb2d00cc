"""One cached token per credential, shared by the threads of a process (Incode's bearer and
executive tokens, ServiceNow's OAuth token)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from connectors.http import Retriable, Unanswered

MARGIN_SECONDS = 60.0  # refresh this long before a token's stated expiry


class CachedToken:
    """Fetched when missing, near expiry, or rejected. ``fetch`` returns the token and its
    lifetime in seconds; one thread fetches while the others wait for its result."""

    def __init__(self, fetch: Callable[[], tuple[str, float]]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._value: str | None = None
        self._expires = 0.0

    def get(self, *, stale: str | None = None) -> str:
        """The current token. ``stale`` is one a server just rejected: it is replaced, unless
        another thread already did."""
        with self._lock:
            if self._value is None or self._value == stale or time.time() >= self._expires:
                try:
                    token, ttl = self._fetch()
                except Unanswered as exc:  # asking for a token twice harms no one
                    raise Retriable(exc.system, exc.reason, exc.status) from None
                self._value = token
                self._expires = time.time() + max(ttl - MARGIN_SECONDS, 1.0)
            return self._value
