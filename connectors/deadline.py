"""An overall deadline for outside calls, enforced at the socket.

httpx's timeouts bound each connect, read and write, not a whole exchange: an answer trickled a
byte at a time never trips a 10 s read timeout and can take minutes. Here every socket operation
of a call is given at most the time left until the call's deadline, so a call ends by then
however its answer arrives (``httpx.ReadTimeout`` and friends, as for any timeout).

A deadline belongs to the thread: ``deadline(s)`` bounds every call made inside it (nested
deadlines keep the earlier one), and ``DeadlineTransport`` adds each call's own bound on top.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_local = threading.local()


def _current() -> float | None:
    at: float | None = getattr(_local, "at", None)
    return at


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every outside call made inside ends within ``seconds`` from now (or an earlier
    deadline already in force)."""
    with _until(time.monotonic() + seconds):
        yield


def left() -> float | None:
    """Seconds left until this thread's deadline (None: no deadline in force)."""
    at = _current()
    return None if at is None else at - time.monotonic()


@contextmanager
def _until(at: float) -> Iterator[None]:
    previous = _current()
    _local.at = at if previous is None else min(previous, at)
    try:
        yield
    finally:
        _local.at = previous


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left of the deadline; ``error`` once none is left."""
    at = _current()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the call's overall deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(
            self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _Body(httpx.SyncByteStream):
    """The response body, read under the deadline of the call that asked for it."""

    def __init__(self, stream: httpx.SyncByteStream, at: float) -> None:
        self._stream = stream
        self._at = at

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._stream)
        while True:
            with _until(self._at):
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._stream.close()


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport, every call of which ends within ``overall`` seconds (or the thread's
    earlier deadline), body included."""

    def __init__(self, overall: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.overall = overall
        # httpx takes no network backend; its pool's is wrapped (tests/unit/test_deadline.py
        # pins this against the installed httpx and httpcore).
        pool = self._pool
        pool._network_backend = _Backend(pool._network_backend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        at = time.monotonic() + self.overall
        current = _current()
        at = at if current is None else min(current, at)
        with _until(at):
            response = super().handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Body(response.stream, at)
        return response
