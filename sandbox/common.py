"""What every simulator shares.

- a call log, so tests and the demo can count what Deskgate asked of each system;
- a rate limit (429 + ``Retry-After``), added latency and one-shot fault injection;
- a control API under ``/_sandbox/`` that drives all of the above (never counted, never limited);
- ``serve()``: a real threaded HTTP server on loopback for any WSGI app.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from flask import Flask, Response, g, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

CONTROL_PREFIX = "/_sandbox/"

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


@dataclass
class Call:
    method: str
    path: str
    route: str
    status: int
    at: float  # when it was answered
    started: float = 0.0  # when it arrived (before any injected latency or stall)


@dataclass
class Controls:
    """Per-simulator knobs and records. Thread-safe: the server is threaded."""

    name: str
    error_response: ErrorResponder
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    latency: float = 0.0
    rate_limit: tuple[int, float] | None = None
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
        if fault is not None and fault.stage == "after":
            g.sandbox_hold = fault.delay
        elif fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status == 0:
                return None
            resp = self.error_response(fault.status, "Injected fault")
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
        if not request.path.startswith(CONTROL_PREFIX):
            rule = request.url_rule.rule if request.url_rule is not None else request.path
            started = g.get("sandbox_started", 0.0)
            with self._lock:
                self.calls.append(
                    Call(
                        request.method, request.path, rule, response.status_code, time.time(),
                        started,
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
            calls = [asdict(c) for c in self.calls]
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


@dataclass
class Server:
    """A WSGI app served on loopback by a background thread."""

    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> Server:
    """Serve ``app`` on ``host:port`` (0 = any free port) until ``stop()``."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=f"serve:{port}", daemon=True)
    thread.start()
    return Server(server, thread)
