"""What every benchmark shares: the running system, latency profiles, CPU and memory accounting,
percentiles, and writing a section of docs/performance.md.

The system is ``sandbox.stack.Stack`` (the webhook app under gunicorn and a Celery worker as child
processes), on Redis database 12. One thing is tuned here, outside the product, so that the
figures measure Deskgate and not the simulators:

- ``Stack`` serves the simulators as threads of the calling process. Under load that process,
  one GIL shared by three simulators and the bench's own agents, answers a 150 ms call in 1-2 s
  (measured: docs/performance.md), so here each simulator runs in a process of its own
  (``serve_simulators_in_processes``), the same app with the same config, served by the same
  keep-alive ``sandbox.common.serve``.

The simulators themselves share one pooled client for their outgoing webhooks, keep connections
alive, and count the Zendesk rate-limit header in O(log n), so nothing else needs patching.
``--raw-sandbox`` on every bench serves the simulators as threads of the bench's process.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from redis import Redis

from sandbox.stack import Stack, StackOptions, wait_until

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
RESERVED_DBS = frozenset({13, 14, 15})  # the demo's and the tests'
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
KEY_PREFIX = "dgb"
QUEUE = "dgbench"


# -- where and on what --------------------------------------------------------------------


def redis_url() -> str:
    """The benches' Redis: database 12 unless ``DESKGATE_BENCH_REDIS_URL`` says otherwise; never
    a database the demo or the tests use, never a remote host (the benches flush it)."""
    url = os.environ.get("DESKGATE_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    parsed = urlparse(url)
    db = int((parsed.path or "/0").lstrip("/") or 0)
    if db in RESERVED_DBS:
        raise SystemExit(f"refusing Redis database {db}: the demo and the tests use 13-15")
    if parsed.hostname not in LOOPBACK:
        raise SystemExit(f"refusing {parsed.hostname}: benchmarks talk to 127.0.0.1 only")
    return url


def machine() -> str:
    """One line naming the machine, the interpreter, Redis and the code measured."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        version = Redis.from_url(redis_url()).info("server")["redis_version"]
    except Exception:  # a description must not fail a bench
        version = "?"
    return (
        f"{os.cpu_count()} cores ({model}), {mem_gib:.0f} GiB, Python {platform.python_version()},"
        f" Redis {version}, code {git_revision()}"
    )


def git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return done.stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes' if dirty else ''}"


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- latency profiles -----------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Latency the simulators add to every outside call Deskgate makes (and people's calls)."""

    name: str
    ticketing: float
    incode: float

    def describe(self) -> str:
        if not (self.ticketing or self.incode):
            return "no added latency"
        return f"{self.ticketing * 1000:.0f} ms ticketing, {self.incode * 1000:.0f} ms Incode"


PROFILES = {
    "none": Profile("none", 0.0, 0.0),
    "realistic": Profile("realistic", 0.150, 0.300),
}


# The extension each simulator app keeps its state in (with a ``config``) -> its module.
_SIMULATOR_STATES = {
    "zendesk_state": "sandbox.zendesk",
    "servicenow_sim": "sandbox.servicenow",
    "incode_sim": "sandbox.incode",
}


def host_simulator() -> None:
    """Child process: serve the simulator described on stdin until terminated, or until the
    bench that started it is gone."""
    from sandbox.common import serve

    module_name, config, host, port = pickle.loads(sys.stdin.buffer.read())  # noqa: S301
    module = importlib.import_module(module_name)
    server = serve(module.create_app(config), host, port)
    parent = os.getppid()
    while server.thread.is_alive() and os.getppid() == parent:
        time.sleep(1)


class SimulatorProcess:
    """Quacks like ``sandbox.common.Server`` for ``Stack.stop()``."""

    def __init__(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def serve_simulators_in_processes() -> Callable[[], None]:
    """Make ``Stack.start()`` serve each simulator app from a process of its own (the same app
    factory and config, rebuilt there). Returns the undo."""
    import sandbox.stack as stack_module

    def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> SimulatorProcess:
        name, config = next(
            (module, app.extensions[ext].config)
            for ext, module in _SIMULATOR_STATES.items()
            if ext in app.extensions
        )
        process = subprocess.Popen(
            [sys.executable, "-c", "from bench.harness import host_simulator; host_simulator()"],
            stdin=subprocess.PIPE,
            cwd=ROOT,
        )
        assert process.stdin is not None
        process.stdin.write(pickle.dumps((name, config, host, port)))
        process.stdin.close()

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"simulator {name} exited ({process.returncode})")
            try:
                httpx.get(f"http://{host}:{port}/_sandbox/calls", timeout=1)
            except httpx.HTTPError:
                return False
            return True

        if not wait_until(answers, 30, every=0.1):
            process.kill()
            raise TimeoutError(f"simulator {name} did not answer on port {port}")
        return SimulatorProcess(name.rsplit(".", 1)[-1], process)

    # Stack.start() calls the name sandbox.stack imported; it takes no serve of its own to pass.
    original = stack_module.serve  # type: ignore[attr-defined]
    stack_module.serve = serve  # type: ignore[attr-defined, assignment]  # stops like a Server
    return lambda: setattr(stack_module, "serve", original)


# -- the running system -----------------------------------------------------------------------


class BenchStack:
    """``Stack`` on the benches' Redis, with one driver per desk kind asked for.

    ``kinds`` are the names ``Stack.driver`` takes; every bench loops over them, so a desk kind
    that the stack can drive is benchmarked by naming it on the command line.
    """

    def __init__(
        self,
        *,
        kinds: Sequence[str],
        employees: Iterable[str] = (),
        concurrency: int = 32,
        raw_sandbox: bool = False,
        **options: Any,
    ) -> None:
        self.url = redis_url()
        self.kinds = list(kinds)
        self.raw_sandbox = raw_sandbox
        self.options = StackOptions(
            redis_url=self.url,
            key_prefix=KEY_PREFIX,
            queue=QUEUE,
            employees=frozenset(employees),
            worker_concurrency=concurrency,
            **options,
        )
        self._unpatch: Callable[[], None] | None = None
        self.stack: Stack | None = None

    def __enter__(self) -> BenchStack:
        Redis.from_url(self.url).flushdb()
        if not self.raw_sandbox:
            self._unpatch = serve_simulators_in_processes()
        self.stack = Stack(self.options)
        try:
            self.stack.start()
        except BaseException:
            self.__exit__()
            raise
        self.drivers = {kind: self.stack.driver(kind) for kind in self.kinds}
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self._unpatch is not None:
            self._unpatch()
        Redis.from_url(self.url).flushdb()

    @property
    def s(self) -> Stack:
        assert self.stack is not None, "use BenchStack as a context manager"
        return self.stack

    @property
    def redis(self) -> Redis[str]:
        return self.s.redis

    def sim(self, system: str) -> httpx.Client:
        return self.s.sim[system]

    def set_latency(self, profile: Profile) -> None:
        for driver in self.drivers.values():
            self.sim(driver.system).put("/_sandbox/latency", json={"seconds": profile.ticketing})
        self.sim("incode").put("/_sandbox/latency", json={"seconds": profile.incode})

    def systems(self) -> list[str]:
        return [d.system for d in self.drivers.values()] + ["incode"]

    def reset_calls(self) -> None:
        for system in self.systems():
            self.sim(system).delete("/_sandbox/calls").raise_for_status()

    def calls(self, system: str) -> list[dict[str, Any]]:
        resp = self.sim(system).get("/_sandbox/calls", timeout=120)
        resp.raise_for_status()
        calls: list[dict[str, Any]] = resp.json()["calls"]
        return calls

    def processes(self) -> dict[str, list[int]]:
        """Process ids per part, for CPU and memory accounting."""
        web = self.s.children["web"].proc.pid
        groups = {"bench": [os.getpid()]}
        for server in self.s.servers:
            if isinstance(server, SimulatorProcess) and server.name in self.systems():
                groups[f"{server.name} sim"] = [server.pid]
        groups["webhook app (gunicorn)"] = [web, *children_of(web)]
        groups["worker (Celery)"] = [self.s.children["worker"].proc.pid]
        # Redis in a container or elsewhere: its CPU is not visible here.
        if self.url.startswith("redis://127.0.0.1") or self.url.startswith("redis://localhost"):
            groups["redis-server"] = [int(self.redis.info("server")["process_id"])]
        return groups

    def worker_pid(self) -> int:
        return self.s.children["worker"].proc.pid

    # -- the store, read the way the benches need it --------------------------------------

    def open_key(self, kind: str, ticket_id: str) -> str:
        return f"{KEY_PREFIX}:open:{self.drivers[kind].desk}:{ticket_id}"

    def record_key(self, vid: str) -> str:
        return f"{KEY_PREFIX}:v:{vid}"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


# -- CPU and memory ---------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class CpuMeter:
    """CPU used by each group of processes between ``start()`` and ``stop()``."""

    groups: dict[str, list[int]]
    used: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    _start: dict[str, float] = field(default_factory=dict)
    _t: float = 0.0

    others: float = 0.0  # CPU of every other process on the machine: another run's noise
    _all: dict[int, float] = field(default_factory=dict)

    def _sample(self) -> dict[str, float]:
        return {g: sum(cpu_seconds(p) for p in pids) for g, pids in self.groups.items()}

    def start(self) -> CpuMeter:
        self._start, self._all, self._t = self._sample(), all_cpu(), time.monotonic()
        return self

    def stop(self) -> CpuMeter:
        end, every = self._sample(), all_cpu()
        self.wall = time.monotonic() - self._t
        self.used = {g: end[g] - self._start[g] for g in self.groups}
        ours = {p for pids in self.groups.values() for p in pids}
        self.others = sum(
            cpu - self._all.get(pid, 0.0) for pid, cpu in every.items() if pid not in ours
        )
        return self

    @property
    def share(self) -> float:
        """All measured parts together, as a share of the machine's cores (0..1)."""
        return sum(self.used.values()) / self.wall / (os.cpu_count() or 1) if self.wall else 0.0

    def summary(self, per: int | None = None, unit: str = "verification") -> str:
        """'worker 12.3 s (45%, 1.2 ms/verification); ...' over the measured wall time."""
        parts = []
        for group, seconds in self.used.items():
            text = f"{group} {seconds:.1f} s ({seconds / self.wall * 100:.0f}% of a core"
            if per:
                text += f", {seconds / per * 1000:.1f} ms/{unit}"
            parts.append(text + ")")
        parts.append(f"together {self.share * 100:.0f}% of {os.cpu_count()} cores")
        if self.others > 0.05 * self.wall:
            parts.append(
                f"**other processes {self.others / self.wall * 100:.0f}% of a core** (not"
                " this bench's: another run shared the machine)"
            )
        return "; ".join(parts)


def all_cpu() -> dict[int, float]:
    """CPU seconds of every process on the machine, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


# -- numbers ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured sample)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ticket_writes(calls: Iterable[dict[str, Any]], driver: Any) -> dict[str, list[float]]:
    """When Deskgate wrote to each ticket (the gate, then the outcome), from a simulator's call
    log: successful PUT/PATCH calls on a record path that are not people's own calls."""
    writes: dict[str, list[float]] = {}
    for call in calls:
        if call["method"] not in ("PUT", "PATCH") or call["status"] >= 300:
            continue
        if driver.is_driver_call(f"{call['method']} {call['route']}"):
            continue
        ticket = call["path"].rstrip("/").rsplit("/", 1)[-1]
        writes.setdefault(ticket, []).append(float(call["at"]))
    for times in writes.values():
        times.sort()
    return writes


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- docs/performance.md ----------------------------------------------------------------------


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- bench:NAME -->`` markers in
    docs/performance.md, leaving the hand-written text around it alone."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"\n(written to {DOC.relative_to(ROOT)}, section {name!r})")
