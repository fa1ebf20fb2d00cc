"""One cached token per credential: fetched once however many threads ask, replaced once when a
server rejects it, and a token request that went unanswered is simply retriable."""

from __future__ import annotations

import threading
import time

import pytest
from freezegun import freeze_time

from connectors.http import Retriable, Unanswered
from connectors.token_cache import MARGIN_SECONDS, CachedToken


class Issuer:
    """Hands out token-1, token-2, ... with a lifetime, slowly (so threads overlap)."""

    def __init__(self, ttl: float = 3600.0, delay: float = 0.0) -> None:
        self.ttl = ttl
        self.delay = delay
        self.issued = 0

    def __call__(self) -> tuple[str, float]:
        time.sleep(self.delay)
        self.issued += 1
        return f"token-{self.issued}", self.ttl


def test_threads_asking_at_once_share_one_fetch() -> None:
    issuer = Issuer(delay=0.05)
    token = CachedToken(issuer)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(token.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["token-1"] * 8 and issuer.issued == 1


def test_a_rejected_token_is_replaced_once_even_when_two_threads_report_it() -> None:
    issuer = Issuer()
    token = CachedToken(issuer)
    first = token.get()
    assert token.get(stale=first) == "token-2"
    assert token.get(stale=first) == "token-2"  # another thread already replaced it
    assert issuer.issued == 2


def test_a_token_is_refreshed_its_margin_before_it_expires() -> None:
    issuer = Issuer(ttl=600.0)
    with freeze_time("2026-01-01 00:00:00") as clock:
        token = CachedToken(issuer)
        assert token.get() == "token-1"
        clock.tick(600 - MARGIN_SECONDS - 1)
        assert token.get() == "token-1"
        clock.tick(1)
        assert token.get() == "token-2"


def test_an_unanswered_token_request_is_retriable_not_unanswered() -> None:
    def unanswered() -> tuple[str, float]:
        raise Unanswered("incode", "timed out on POST /oauth2/token")

    with pytest.raises(Retriable) as raised:
        CachedToken(unanswered).get()
    # Unanswered would tell the caller its own request may have been acted on; it was not sent.
    assert not isinstance(raised.value, Unanswered)
