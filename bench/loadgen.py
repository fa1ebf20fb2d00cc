"""A small HTTP/1.1 load generator for the webhook benchmark, and a wrapper around ``wrk``.

- ``open_loop``: requests at a fixed rate whatever the server does, each latency measured from
  the moment the request was *due* (so a stalled server cannot hide its queue: no coordinated
  omission). Python asyncio over keep-alive connections; 500 requests/s costs it little CPU.
- ``closed_loop``: ``connections`` clients sending back to back for ``duration`` seconds, for a
  server's peak rate when ``wrk`` is not installed.
- ``wrk``: the same closed loop with wrk (C, far cheaper per request than any Python client, so
  more of the machine's two cores are left to the server), driven by a Lua script written here.

Targets are loopback only; every loop is bounded by its duration.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from bench.harness import LOOPBACK, percentile

# One request: (path, headers, body). ``i`` numbers the requests of a run from 0.
Request = tuple[str, dict[str, str], bytes]
MakeRequest = Callable[[int], Request]


@dataclass
class LoadResult:
    tool: str
    sent: int
    duration: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # connection failures and timeouts
    quantiles: dict[float, float] = field(default_factory=dict)  # when the tool computed them

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def rate(self) -> float:
        return self.ok / self.duration if self.duration else 0.0

    def q(self, p: float) -> float:
        if p in self.quantiles:
            return self.quantiles[p]
        return percentile(self.latencies, p)


def _target(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    if parsed.hostname not in LOOPBACK:
        raise ValueError(f"load is sent to loopback only, not {parsed.hostname}")
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def _encode(host: str, port: int, request: Request) -> bytes:
    path, headers, body = request
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> tuple[int, bool]:
    """Send one request, read its response; returns (status, server keeps the connection)."""
    writer.write(payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() != "close"


class _Pool:
    """Keep-alive connections, opened on demand up to ``size``."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.slots = asyncio.Semaphore(size)

    async def send(self, payload: bytes, timeout: float) -> int:
        async with self.slots:
            conn = self.idle.get_nowait() if not self.idle.empty() else None
            if conn is None:
                conn = await asyncio.open_connection(self.host, self.port)
            try:
                status, keep = await asyncio.wait_for(_exchange(*conn, payload), timeout)
            except BaseException:
                conn[1].close()
                raise
            if keep:
                self.idle.put_nowait(conn)
            else:
                conn[1].close()
            return status

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait()[1].close()


def open_loop(
    url: str,
    make: MakeRequest,
    rate: float,
    duration: float,
    connections: int = 64,
    timeout: float = 10.0,
) -> LoadResult:
    """``rate`` requests/s for ``duration`` s; latency from each request's due time."""
    host, port = _target(url)
    total = int(rate * duration)
    result = LoadResult("python open loop", total, duration)

    async def one(pool: _Pool, i: int, due: float) -> None:
        try:
            status = await pool.send(_encode(host, port, make(i)), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            return
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if 200 <= status < 300:
            result.latencies.append(time.perf_counter() - due)

    async def main() -> None:
        pool = _Pool(host, port, connections)
        start = time.perf_counter() + 0.05
        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(pool, i, due)))
        await asyncio.gather(*tasks)
        pool.close()

    asyncio.run(main())
    return result


def closed_loop(
    url: str, make: MakeRequest, connections: int, duration: float, timeout: float = 10.0
) -> LoadResult:
    """``connections`` clients back to back for ``duration`` s (the peak rate)."""
    host, port = _target(url)
    result = LoadResult("python closed loop", 0, duration)
    counter = iter(range(10**9))

    async def client(pool: _Pool, stop: float) -> None:
        while time.perf_counter() < stop:
            i = next(counter)
            began = time.perf_counter()
            try:
                status = await pool.send(_encode(host, port, make(i)), timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                continue
            result.sent += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                result.latencies.append(time.perf_counter() - began)

    async def main() -> None:
        pool = _Pool(host, port, connections)
        stop = time.perf_counter() + duration
        await asyncio.gather(*(client(pool, stop) for _ in range(connections)))
        pool.close()

    asyncio.run(main())
    return result


# -- wrk ------------------------------------------------------------------------------------

_LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50":%d,"p95":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def wrk_script(requests: list[Request] | None = None, lua_request: str | None = None) -> str:
    """Lua for wrk: cycle through fixed ``requests``, or use ``lua_request`` (a Lua ``request``
    function) for bodies that must differ on every request."""
    if lua_request is not None:
        return lua_request + _LUA_DONE
    assert requests, "requests or lua_request"
    items = ",\n".join(
        f"  wrk.format('POST', {_lua_string(p)}, {{"
        + ", ".join(f"[{_lua_string(k)}]={_lua_string(v)}" for k, v in h.items())
        + f"}}, {_lua_string(b)})"
        for p, h, b in requests
    )
    return f"""
local reqs = nil
local n = 0
init = function(args)
  reqs = {{
{items}
  }}
end
request = function()
  n = n + 1
  return reqs[(n % #reqs) + 1]
end
{_LUA_DONE}"""


def wrk(url: str, script: str, connections: int, duration: float, threads: int = 2) -> LoadResult:
    """Run wrk against ``url`` (loopback) with the Lua ``script``; parse its summary."""
    _target(url)
    with tempfile.TemporaryDirectory(prefix="deskgate-wrk-") as tmp:
        path = Path(tmp) / "script.lua"
        path.write_text(script)
        done = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s",
             "-s", str(path), url],
            capture_output=True, text=True, timeout=duration + 60, check=False,
        )  # fmt: skip
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    seconds = data["duration_us"] / 1e6
    bad = data["status"]
    result = LoadResult("wrk", data["requests"], seconds)
    result.statuses = {200: data["requests"] - bad, 599: bad} if bad else {200: data["requests"]}
    result.errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    result.quantiles = {p: data[f"p{p}"] / 1e6 for p in (50, 95, 99)}
    result.quantiles[100] = data["max"] / 1e6
    return result
