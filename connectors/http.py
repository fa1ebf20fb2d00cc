"""The HTTP layer every connector shares: explicit timeouts, one classification of responses
into typed errors, and ``Retry-After`` parsing.

Callers never see an ``httpx`` exception: transport failures become ``Retriable``, responses are
classified once here (5xx, 429, timeouts retriable; other 4xx fatal). Nothing here sleeps: a
``RateLimited`` carries the wait, and the Celery task reschedules itself.
"""

from __future__ import annotations

import contextvars
import email.utils
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx
from httpx._utils import get_environment_proxies  # httpx's reading of *_PROXY (tested)

from config import metrics
from config.privacy import scrub
from connectors.deadline import DeadlineTransport

MAX_RETRY_AFTER = 600.0  # never wait longer than this, whatever a server asks

# The id of the request or task this thread (or greenlet) works for: the webhook app takes it from
# the sender's X-Request-Id, the task carries it, and every outside call sends it, so one grep
# follows a ticket from the push to Zendesk, ServiceNow and Incode (docs/architecture.md).
REQUEST_ID_HEADER = "X-Request-Id"
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Short and plain, so a sender's id can go into logs and other systems' headers as it is.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def accepted_request_id(value: str | None) -> str:
    """``value`` if it is a safe request id (1-64 of letters, digits, ``.``, ``_``, ``:``,
    ``-``), else a new one: an id from outside never carries anything else into a log line."""
    if value is not None and _SAFE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def _stamp_request_id(request: httpx.Request) -> None:
    rid = request_id.get()
    if rid is not None:
        request.headers[REQUEST_ID_HEADER] = rid


class ApiError(Exception):
    """An outside system said no, or could not be reached. ``reason`` is safe to log."""

    def __init__(self, system: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{system}: {reason}" + (f" (HTTP {status})" if status else ""))
        self.system = system
        self.reason = reason
        self.status = status


class Retriable(ApiError):
    """Try again later: 5xx, timeouts, connection failures."""


class Unanswered(Retriable):
    """The request was sent (or partly sent) and no whole answer came back in time: the server
    may have acted on it. Safe to retry for a read or a conditional write; not for a request
    that sends someone a link."""


class RateLimited(Retriable):
    """429 (or 503 with Retry-After): try again after ``retry_after`` seconds."""

    def __init__(self, system: str, retry_after: float, status: int = 429) -> None:
        super().__init__(system, f"rate limited, retry after {retry_after:.0f}s", status)
        self.retry_after = retry_after


class Fatal(ApiError):
    """Trying again will not help (4xx other than 429): fix the input or the configuration."""


class AuthFailed(Fatal):
    """401/403: the credentials or their rights are wrong."""


class NotFound(Fatal):
    """404: the record does not exist (deleted, or never did)."""


class Conflict(ApiError):
    """409: someone changed the record since we read it; re-read, then write again."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _until_reset(value: str | None) -> float | None:
    """Seconds until an ``X-RateLimit-Reset`` epoch (ServiceNow, GitHub), capped."""
    try:
        return min(max(float(value or "") - time.time(), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None


Describe = Callable[[httpx.Response], str]
# Raises a system's own typed error for a response it recognises (a custom error code in the
# body), before the status decides; returns quietly otherwise.
Check = Callable[[httpx.Response], None]


def _reason(response: httpx.Response, describe: Describe) -> str:
    try:
        text = describe(response)
    except Exception:  # a body we cannot read must not hide the status
        text = ""
    # Vendors echo what they were sent (an address, a phone); the reason reaches logs and errors.
    return scrub(text or response.reason_phrase or "error")


def classify(system: str, response: httpx.Response, describe: Describe) -> None:
    """Raise the typed error for a non-2xx response; return quietly otherwise."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status < 400:
        # Redirects are not followed (credentials would go wherever they point), so nothing
        # was done: a desk that did not write, or a SIEM that did not take events, must not
        # read as success. The base URL is what needs fixing.
        where = response.headers.get("Location", "elsewhere")
        raise Fatal(system, f"answered a redirect to {scrub(where)}: check its base URL", status)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is None and status == 429:
        retry_after = _until_reset(response.headers.get("X-RateLimit-Reset"))
    if status == 429 or (status == 503 and retry_after is not None):
        raise RateLimited(system, retry_after if retry_after is not None else 30.0, status)
    reason = _reason(response, describe)
    if status >= 500:
        raise Retriable(system, reason, status)
    if status in (401, 403):
        raise AuthFailed(system, reason, status)
    if status == 404:
        raise NotFound(system, reason, status)
    if status == 409:
        raise Conflict(system, reason, status)
    raise Fatal(system, reason, status)


DEFAULT_DEADLINE = 30.0


class SlotTransport(httpx.BaseTransport):
    """Calls spread over a few small connection pools (shards), each taking at most as many
    calls as it has connections; a call waits here, on its shard's semaphore, until a response
    is closed, never in httpcore's pool queue.

    httpcore's pool does its bookkeeping under one lock at each call's start and end, scanning
    every queued request against every connection and, for each idle connection, all the
    connections again: with 128 worker threads, 50 connections and calls of 150-300 ms (so many
    in flight at once) that cost more CPU than the calls themselves, and the worker's CPU per
    verification grew with the vendors' latency (docs/performance.md). Small shards keep each
    scan and each lock's queue short; a thread tries its own shard first, then any with a free
    connection, then waits for its own."""

    SHARD = 8  # connections per shard at most

    def __init__(self, connections: int, make: Callable[[httpx.Limits], httpx.BaseTransport]):
        count = -(-connections // self.SHARD)  # shards, each with SHARD connections or fewer
        sizes = [connections // count + (i < connections % count) for i in range(count)]
        self._shards = [(make(_limits(n)), threading.BoundedSemaphore(n)) for n in sizes]
        self._homes = itertools.count()
        self._home = threading.local()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport, slots = self._acquire(request)
        try:
            response = transport.handle_request(request)
        except BaseException:
            slots.release()
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _SlotHeld(response.stream, slots)
        return response

    def _acquire(
        self, request: httpx.Request
    ) -> tuple[httpx.BaseTransport, threading.BoundedSemaphore]:
        home = getattr(self._home, "shard", None)
        if home is None:
            home = self._home.shard = next(self._homes) % len(self._shards)
        for i in range(len(self._shards)):
            transport, slots = self._shards[(home + i) % len(self._shards)]
            if slots.acquire(blocking=False):
                return transport, slots
        transport, slots = self._shards[home]
        if not slots.acquire(timeout=request.extensions.get("timeout", {}).get("pool")):
            raise httpx.PoolTimeout("every connection stayed busy", request=request)
        return transport, slots

    def close(self) -> None:
        for transport, _ in self._shards:
            transport.close()


def _limits(connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=30
    )


class _SlotHeld(httpx.SyncByteStream):
    """A response body that gives its slot back when closed (once: httpx may close twice)."""

    def __init__(self, stream: httpx.SyncByteStream, slots: threading.BoundedSemaphore) -> None:
        self._stream = stream
        self._slots: threading.BoundedSemaphore | None = slots

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            slots, self._slots = self._slots, None
            if slots is not None:
                slots.release()


def new_client(
    base_url: str,
    timeout: float,
    *,
    deadline: float = DEFAULT_DEADLINE,
    auth: httpx.Auth | tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    max_connections: int = 50,
) -> httpx.Client:
    """One pooled client per outside system per process, with every timeout explicit: each
    connect, read and write within ``timeout``, each whole call within ``deadline``."""
    tls = httpx.create_ssl_context()  # one for every shard and route: each costs milliseconds

    def transport(proxy: str | None = None) -> httpx.BaseTransport:
        # retries: connect errors only (nothing was sent); the rest is ours. The TLS context is
        # httpx's default (SSL_CERT_FILE, SSL_CERT_DIR), so a proxied call verifies alike.
        return SlotTransport(
            max_connections,
            lambda limits: DeadlineTransport(
                deadline, verify=tls, retries=2, limits=limits, proxy=proxy
            ),
        )

    return httpx.Client(
        base_url=base_url,
        auth=auth,
        headers={"Accept": "application/json", "User-Agent": "deskgate/0.1", **(headers or {})},
        timeout=httpx.Timeout(connect=min(5.0, timeout), read=timeout, write=timeout, pool=timeout),
        transport=transport(),
        mounts=proxy_mounts(transport),
        event_hooks={"request": [_stamp_request_id]},  # each call carries the current id
    )


def proxy_mounts(
    transport: Callable[[str], httpx.BaseTransport],
) -> dict[str, httpx.BaseTransport | None]:
    """The outbound proxies the environment names (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``, in either case), each behind a transport built by ``transport``.

    httpx reads these only for a client without a transport of its own, and Deskgate's clients
    all have one (the deadlines), so the same reading is made here: httpx's own, which follows
    curl's rules. ``None`` sends a ``NO_PROXY`` host direct, through the client's transport."""
    return {
        pattern: None if proxy is None else transport(proxy)
        for pattern, proxy in get_environment_proxies().items()
    }


def request(
    client: httpx.Client,
    system: str,
    method: str,
    url: str,
    describe: Describe,
    *,
    check: Check | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send, turning transport failures into ``Retriable`` (``Unanswered`` once the request
    may have reached the server), then run ``check`` and classify the status into typed errors."""
    response = send(client, system, method, url, **kwargs)
    if check is not None:
        check(response)
    classify(system, response, describe)
    return response


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def send(client: httpx.Client, system: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """``client.request`` with transport failures typed; the response is not classified.
    Every call is counted and timed (``deskgate_outside_request*``), answered or not."""
    started, status = time.perf_counter(), None
    try:
        response = client.request(method, url, **kwargs)
        status = response.status_code
        return response
    except _NOT_SENT as exc:
        raise Retriable(system, f"unreachable ({type(exc).__name__})") from None
    except httpx.TimeoutException:
        raise Unanswered(system, f"timed out on {method} {_path_only(url)}") from None
    except httpx.TransportError as exc:
        raise Unanswered(system, f"no answer ({type(exc).__name__})") from None
    finally:
        metrics.outside_call(system, method, url, status, time.perf_counter() - started)


def same_origin(url: str, base: str) -> bool:
    """``url`` (a link a server handed us) is relative, or on ``base``'s scheme, host and port:
    never send our credentials to a host a response names."""
    target, home = urlsplit(url), urlsplit(base)
    if not target.scheme and not target.netloc:
        return True

    def origin(u: SplitResult) -> tuple[str, str | None, int | None]:
        return u.scheme, u.hostname, u.port or {"http": 80, "https": 443}.get(u.scheme)

    return origin(target) == origin(home)


def _path_only(url: str) -> str:
    # Query strings can carry identifiers; keep logs to the path.
    return url.split("?", 1)[0]


def json_body(system: str, response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or ``Retriable`` if the body is not one (a proxy error page)."""
    try:
        body = response.json()
    except ValueError:
        raise Retriable(system, "response is not JSON", response.status_code) from None
    if not isinstance(body, dict):
        raise Retriable(system, "response is not a JSON object", response.status_code)
    return body
