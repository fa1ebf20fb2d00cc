"""A real forwarding HTTP proxy on loopback, counting what passes through it: absolute-URI
requests (``GET http://host/path``, how a client sends plain HTTP through a proxy) are forwarded,
``CONNECT host:port`` (how it sends HTTPS) is tunnelled. Only loopback origins are served."""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Handler(socketserver.StreamRequestHandler):
    server: ForwardProxy
    rbufsize = 0  # unbuffered: what follows the head stays in the socket for the relay

    def handle(self) -> None:
        line = self.rfile.readline(8192).decode("latin-1")
        head: list[str] = []
        while (header := self.rfile.readline(8192).decode("latin-1")) not in ("\r\n", "\n", ""):
            head.append(header)
        method, target, _ = line.split(" ", 2)
        self.server.record(method, target)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            self._connect(host.strip("[]"), int(port), tunnel=True, first=b"")
            return
        url = urlsplit(target)
        if url.scheme != "http" or url.hostname is None:
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        length = next(
            (int(h.split(":", 1)[1]) for h in head if h.lower().startswith("content-length:")), 0
        )
        body = b""
        while len(body) < length and (chunk := self.rfile.read(length - len(body))):
            body += chunk
        kept = [h for h in head if not h.lower().startswith(("proxy-", "connection:"))]
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        request = f"{method} {path} HTTP/1.1\r\n{''.join(kept)}Connection: close\r\n\r\n"
        self._connect(url.hostname, url.port or 80, tunnel=False, first=request.encode() + body)

    def _connect(self, host: str, port: int, *, tunnel: bool, first: bytes) -> None:
        if host not in LOOPBACK:
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        with socket.create_connection((host, port), timeout=10) as upstream:
            if tunnel:
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            upstream.sendall(first)
            self._relay(upstream)

    def _relay(self, upstream: socket.socket) -> None:
        """Bytes both ways until either side closes (or 10 s pass with nothing)."""
        self.wfile.flush()
        client = self.connection
        while True:
            ready, _, _ = select.select([client, upstream], [], [], 10)
            if not ready:
                return
            for side in ready:
                data = side.recv(65536)
                if not data:
                    return
                (upstream if side is client else client).sendall(data)


class ForwardProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, method: str, target: str) -> None:
        with self._lock:
            self.seen.append((method, target))

    def stop(self) -> None:
        self.shutdown()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.server_close()
