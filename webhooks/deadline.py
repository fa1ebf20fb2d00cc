"""A deadline on reading a request body, so a client that trickles one is dropped with 408.

``deskgate web`` serves the app with gunicorn's gevent worker: a connection costs a greenlet, not a
thread, so slow clients cannot starve genuine deliveries. This middleware bounds how long each one
may hold its greenlet: the body is read in full, under a ``gevent.Timeout``, before Flask sees the
request. The timeout only bites where the read yields to gevent's hub (a monkey-patched socket,
as in the gevent worker); under another server the read is an ordinary blocking one.
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import structlog

log = structlog.get_logger("deskgate.webhooks")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
TIMED_OUT = b'{"error": "request_timeout", "reason": "the request body did not arrive in time"}'


def _length(environ: dict[str, Any]) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


class BodyDeadline:
    """Read at most ``max_bytes + 1`` body bytes within ``seconds``, else answer 408 and close.

    A declared length over ``max_bytes`` is not read at all: the app answers 413 from the header.
    Chunked bodies (no length) are read up to ``max_bytes + 1``, so the app's own limit still sees
    one byte too many and answers 413.
    """

    def __init__(self, app: WSGIApp, seconds: float, max_bytes: int) -> None:
        self.app = app
        self.seconds = seconds
        self.max_bytes = max_bytes

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        length = _length(environ)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if (length is None and not chunked) or length == 0:
            return self.app(environ, start_response)
        if length is not None and length > self.max_bytes:
            return self.app(environ, start_response)
        wanted = length if length is not None else self.max_bytes + 1
        try:
            with gevent.Timeout(self.seconds):
                body = environ["wsgi.input"].read(wanted)
        except gevent.Timeout:
            return self._timed_out(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)

    def _timed_out(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        log.warning(
            "request body too slow; dropped",
            path=environ.get("PATH_INFO", ""),
            seconds=self.seconds,
        )
        # The rest of the body is never read: stop reading the connection, so gunicorn closes it
        # after the answer instead of draining the trickle as the next request.
        shutdown = getattr(environ.get("gunicorn.socket"), "shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(OSError):  # the client is gone already
                shutdown(socket.SHUT_RD)
        start_response(
            "408 Request Timeout",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(TIMED_OUT))),
                ("Connection", "close"),
            ],
        )
        return [TIMED_OUT]
