"""What every simulator shares.

- a call log, so tests and the demo can count what Deskgate asked of each system;
- a rate limit (429 + ``Retry-After``), added latency and one-shot fault injection;
- a clock skew: the ``Date`` header of every answer that far off (``PUT /_sandbox/date_skew``);
- a control API under ``/_sandbox/`` that drives all of the above (never counted, never limited);
- ``WebhookClient``: the one pooled HTTP client a simulator sends its webhooks with;
- ``serve()``: a real threaded HTTP server on loopback for any WSGI app, keeping HTTP/1.1
  connections alive as the real vendors do, so Deskgate's pooled clients reuse them.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import httpx
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

CONTROL_PREFIX = "/_sandbox/"
TRICKLE = "sandbox.trickle"  # WSGI environ key: send this response slowly (``Fault.trickle``)
ON_STOP = "sandbox_on_stop"  # app.extensions key: callables run when the app's server stops

ErrorResponder = Callable[[int, str], Response]


@dataclass
class Fault:
    """The next ``count`` requests matching ``method`` and ``path_prefix`` fail, or stall.

    ``status`` 0 serves the request normally: with ``stage`` "before" it first waits ``delay``
    (the request has not taken effect yet), with "after" it takes effect and the response is held
    for ``delay`` (a client that dies meanwhile never learns it succeeded). Timeouts are a delay
    longer than the client's."""

    path_prefix: str
    status: int = 503
    count: int = 1
    method: str | None = None
    delay: float = 0.0
    retry_after: int | None = None
    stage: Literal["before", "after"] = "before"
    message: str = "Injected fault"  # the error body's text (vendors echo what they were sent)
    # The response (served normally) is sent a byte at a time over this many seconds, each
    # byte well within any read timeout: only a deadline on the whole call ends it.
    trickle: float = 0.0


@dataclass
class Call:
    method: str
    path: str
    route: str
    status: int
    at: float  # when it was answered
    started: float = 0.0  # when it arrived (before any injected latency or stall)
    request_id: str | None = None  # the X-Request-Id header it came with (Deskgate's tracing)


@dataclass
class Controls:
    """Per-simulator knobs and records. Thread-safe: the server is threaded."""

    name: str
    error_response: ErrorResponder
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    latency: float = 0.0
    rate_limit: tuple[int, float] | None = None
    clock_skew: float = 0.0  # seconds the Date header is off (a server whose clock is wrong)
    _recent: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, app: Flask) -> None:
        app.before_request(self._before)
        app.after_request(self._after)
        app.add_url_rule(f"{CONTROL_PREFIX}calls", "sandbox_calls", self._get_calls)
        app.add_url_rule(
            f"{CONTROL_PREFIX}calls", "sandbox_reset_calls", self._reset_calls, methods=["DELETE"]
        )
        app.add_url_rule(
            f"{CONTROL_PREFIX}faults",
            "sandbox_faults",
            self._set_faults,
            methods=["GET", "POST", "DELETE"],
        )
        app.add_url_rule(
            f"{CONTROL_PREFIX}rate_limit",
            "sandbox_rate_limit",
            self._set_rate_limit,
            methods=["PUT", "DELETE"],
        )
        app.add_url_rule(
            f"{CONTROL_PREFIX}latency", "sandbox_latency", self._set_latency, methods=["PUT"]
        )
        app.add_url_rule(
            f"{CONTROL_PREFIX}date_skew", "sandbox_date_skew", self._set_date_skew, methods=["PUT"]
        )

    # -- request hooks -------------------------------------------------------------------

    def _before(self) -> Response | None:
        if request.path.startswith(CONTROL_PREFIX):
            return None
        g.sandbox_started = time.time()
        with self._lock:
            latency = self.latency
            fault = self._take_fault(request.method, request.path)
            limited_for = self._rate_limited()
        if latency:
            time.sleep(latency)
        if fault is not None and fault.trickle:
            request.environ[TRICKLE] = fault.trickle
            return None
        if fault is not None and fault.stage == "after":
            g.sandbox_hold = fault.delay
        elif fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status == 0:
                return None
            resp = self.error_response(fault.status, fault.message)
            if fault.retry_after is not None:
                resp.headers["Retry-After"] = str(fault.retry_after)
            return resp
        if limited_for is not None:
            resp = self.error_response(429, "Too Many Requests")
            resp.headers["Retry-After"] = str(limited_for)
            return resp
        return None

    def _after(self, response: Response) -> Response:
        hold = g.pop("sandbox_hold", 0.0)
        if hold:
            time.sleep(hold)
        if self.clock_skew and not request.path.startswith(CONTROL_PREFIX):
            # The server writes Date itself unless the app did (``_KeepAliveHandler``).
            response.headers["Date"] = email.utils.formatdate(
                time.time() + self.clock_skew, usegmt=True
            )
        if not request.path.startswith(CONTROL_PREFIX):
            rule = request.url_rule.rule if request.url_rule is not None else request.path
            started = g.get("sandbox_started", 0.0)
            with self._lock:
                self.calls.append(
                    Call(
                        request.method, request.path, rule, response.status_code, time.time(),
                        started, request.headers.get("X-Request-Id"),
                    )
                )  # fmt: skip
        return response

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if path.startswith(fault.path_prefix) and fault.method in (None, method):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _rate_limited(self) -> int | None:
        """Sliding window; returns whole seconds to wait when over the limit."""
        if self.rate_limit is None:
            return None
        limit, window = self.rate_limit
        now = time.monotonic()
        while self._recent and self._recent[0] <= now - window:
            self._recent.popleft()
        if len(self._recent) >= limit:
            return max(1, math.ceil(self._recent[0] + window - now))
        self._recent.append(now)
        return None

    # -- control endpoints ----------------------------------------------------------------

    def _get_calls(self) -> Response:
        with self._lock:
            calls = [dict(vars(c)) for c in self.calls]  # asdict's deep copy: ~10x the time
        counts: dict[str, int] = {}
        for c in calls:
            key = f"{c['method']} {c['route']}"
            counts[key] = counts.get(key, 0) + 1
        return jsonify({"calls": calls, "counts": counts})

    def _reset_calls(self) -> Response:
        with self._lock:
            self.calls.clear()
        return jsonify({"ok": True})

    def _set_faults(self) -> Response:
        with self._lock:
            if request.method == "GET":  # the faults not yet taken: has a request met one?
                return jsonify({"faults": [asdict(f) for f in self.faults]})
            if request.method == "DELETE":
                self.faults.clear()
            else:
                body = request.get_json(force=True)
                self.faults.append(Fault(**body))
        return jsonify({"ok": True})

    def _set_rate_limit(self) -> Response:
        with self._lock:
            if request.method == "DELETE":
                self.rate_limit = None
            else:
                body = request.get_json(force=True)
                self.rate_limit = (int(body["requests"]), float(body["per_seconds"]))
            self._recent.clear()
        return jsonify({"ok": True})

    def _set_latency(self) -> Response:
        body = request.get_json(force=True)
        with self._lock:
            self.latency = float(body["seconds"])
        return jsonify({"ok": True})

    def _set_date_skew(self) -> Response:
        body = request.get_json(force=True)
        with self._lock:
            self.clock_skew = float(body["seconds"])
        return jsonify({"ok": True})


# -- outgoing webhooks ------------------------------------------------------------------------


@dataclass
class StopHooks:
    """``app.extensions[ON_STOP]``: what to run when the server serving the app stops."""

    callbacks: list[Callable[[], None]] = field(default_factory=list)


def on_stop(app: Flask, callback: Callable[[], None]) -> None:
    """Run ``callback`` when the server serving ``app`` stops (``Server.stop``)."""
    hooks: StopHooks = app.extensions.setdefault(ON_STOP, StopHooks())
    hooks.callbacks.append(callback)


class WebhookClient:
    """The one pooled ``httpx.Client`` a simulator delivers its webhooks with.

    A client per webhook cost more CPU than the webhook (each builds an SSL context, ~17 ms),
    and opened a connection each time. httpx's pool is thread-safe, so every delivery thread
    shares this one. Created on first use; ``close()`` (on the server's stop) drops it, and a
    later delivery makes a new one.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout,
                    # Receivers are local: an ambient proxy must not intercept.
                    trust_env=False,
                    # No cap on connections (a burst of triggers must not wait for a slot), and
                    # idle ones given up after 1 s: before gunicorn's 2 s keep-alive closes them
                    # under a delivery. Keep-alive uncapped too: see ``pooled_client``.
                    limits=httpx.Limits(
                        max_connections=None, max_keepalive_connections=None, keepalive_expiry=1.0
                    ),
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def pooled_client(**kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` for many threads at once (the people and agents of the sandbox).

    Its keep-alive pool is as large as its connection cap. With httpx's default (100 connections,
    20 kept alive) httpcore 1.0 closes "idle" connections past the 20th while others wait, and a
    connection just handed to a waiting thread still counts as idle: that thread then reads from
    a closed socket (``ReadError: [Errno 9] Bad file descriptor``; seen flagging 2,000 tickets
    from 128 threads). Deskgate's own clients (``connectors.http.new_client``) size both alike.
    """
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    return httpx.Client(limits=limits, **kwargs)


# -- the HTTP server ---------------------------------------------------------------------------

_NO_BODY_STATUSES = frozenset({204, 304})


class _KeepAliveHandler(WSGIRequestHandler):
    """werkzeug's request handler, keeping HTTP/1.1 connections alive as vendors' servers do.

    werkzeug's own ``run_wsgi`` answers every request with ``Connection: close`` (and drains the
    socket for 10 ms), so each call cost the client a TCP connection and the server a thread.
    Here a connection's thread serves its requests one after another until the client closes it,
    asks to (``Connection: close``) or speaks HTTP/1.0 without keep-alive. Still one thread per
    connection: stalls and added latency never queue behind one another.

    The simulators' bodies are small, so a response is buffered and sent in one write, always
    with a ``Content-Length`` (no chunking); a request body the app did not read is skipped
    before the next request line.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def run_wsgi(self) -> None:
        # "Expect: 100-continue" has been answered by http.server's parse_request already.
        self.environ = environ = self.make_environ()
        body = environ["wsgi.input"]
        if not environ.get("wsgi.input_terminated"):  # not chunked: Content-Length ends it
            try:
                length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
            except ValueError:  # where the body ends is unknown: this connection is done
                length, self.close_connection = 0, True
            body = environ["wsgi.input"] = LimitedStream(cast(IO[bytes], self.rfile), length)
            environ["wsgi.input_terminated"] = True

        status, headers, payload = self._call_app(environ)
        code = int(status.split(None, 1)[0])
        if self.command == "HEAD":
            payload = b""
        elif (
            code >= 200
            and code not in _NO_BODY_STATUSES
            and not any(name.lower() == "content-length" for name, _ in headers)
        ):
            headers.append(("Content-Length", str(len(payload))))
        lines = [
            f"{self.protocol_version} {status}",
            f"Server: {self.version_string()}",
            *(
                []
                if any(n.lower() == "date" for n, _ in headers)
                else [f"Date: {self.date_time_string()}"]
            ),
            *(f"{name}: {value}" for name, value in headers),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        message = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        trickle = float(environ.get(TRICKLE) or 0)
        if trickle:
            self._trickle(message, trickle)
        else:
            self.wfile.write(message)

        try:  # skip what the app left of the body, so the next request starts where it should
            if isinstance(body, LimitedStream):
                body.exhaust()
            else:
                while body.read(65536):
                    pass
        except Exception:
            self.close_connection = True

    def _trickle(self, message: bytes, seconds: float) -> None:
        """Send ``message`` a byte at a time, spread over ``seconds`` (a client gone: stop)."""
        pause = seconds / max(len(message), 1)
        try:
            for i in range(len(message)):
                self.wfile.write(message[i : i + 1])
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            self.close_connection = True

    def _call_app(self, environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
        """Run the app to the end: (status, headers, body). An error becomes a 500."""
        started: list[tuple[str, list[tuple[str, str]]]] = []
        chunks: list[bytes] = []

        def start_response(
            status: str,
            headers: list[tuple[str, str]],
            exc_info: tuple[type[BaseException], BaseException, TracebackType]
            | tuple[None, None, None]
            | None = None,
        ) -> Callable[[bytes], object]:
            # Nothing is sent before the app returns, so an error handler may always start over.
            if started and exc_info is None:
                raise AssertionError("Headers already set")
            started[:] = [(status, list(headers))]
            return chunks.append

        def run(app: WSGIApplication) -> None:
            result: Iterable[bytes] = app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not started:
                raise AssertionError("the app returned without calling start_response")

        try:
            run(self.server.app)
        except Exception:
            self.close_connection = True
            self.log("error", "Error on request:\n%s", traceback.format_exc())
            started.clear()
            chunks.clear()
            run(InternalServerError())
        status, headers = started[0]
        return status, headers, b"".join(chunks)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No line per request (werkzeug formats one even when its logger drops it)."""


class _KeepAliveServer(ThreadedWSGIServer):
    """werkzeug's threaded server (a thread per connection) that can end its open connections:
    with keep-alive, a stopped server's threads would otherwise go on serving pooled clients."""

    def __init__(self, host: str, port: int, app: WSGIApplication) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(host, port, app, handler=_KeepAliveHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Each connection's thread then reads the end of the stream and returns."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


@dataclass
class Server:
    """A WSGI app served on loopback by a background thread."""

    server: _KeepAliveServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.close_connections()
        hooks = getattr(self.server.app, "extensions", {}).get(ON_STOP)
        for callback in hooks.callbacks if isinstance(hooks, StopHooks) else ():
            callback()


def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> Server:
    """Serve ``app`` on ``host:port`` (0 = any free port) until ``stop()``, with keep-alive."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = _KeepAliveServer(host, port, app)
    thread = threading.Thread(target=server.serve_forever, name=f"serve:{port}", daemon=True)
    thread.start()
    return Server(server, thread)
