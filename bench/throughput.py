"""Benchmark 2, lifecycle throughput: N tickets flagged at once, every lifecycle completed.

All N tickets (spread over the desk kinds named) are flagged at once, as a macro or a bulk edit
would; each employee completes Incode's check as soon as their ticket is gated; the run ends
when every outcome note is written. Verifications per second = N / (last outcome write - first
flag). Run with the simulators adding no latency (CPU-bound) and with a realistic latency on
every outside call (the thread pool's concurrency is what counts then).

Run ``python -m bench.throughput`` (1,000 and 10,000 tickets, both profiles, 128 worker threads:
about 15 minutes) or e.g. ``--tickets 1000 --profiles realistic --concurrency 16,32,64,128,256
--section throughput-sweep`` for a concurrency sweep. Tickets are split between a Zendesk and a
ServiceNow desk by default. 128 threads by default: with the realistic profile a lifecycle waits
1.05 s (Zendesk: 3 calls of 150 ms, 2 of 300 ms) to 1.35 s (ServiceNow: 5 + 2) on the vendors,
so 50/s needs 53-68 busy threads.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from bench.harness import (
    PROFILES,
    BenchStack,
    CpuMeter,
    Profile,
    batched,
    machine,
    memory_mib,
    met,
    now_utc,
    table,
    ticket_writes,
    write_section,
)
from sandbox.registry import DESKS
from sandbox.stack import METRICS_TOKEN

TARGET_RATE = 50.0  # verifications/s with the realistic profile, one worker process
SCRAPE_SECONDS = 5.0
WINDOW = 2000  # lifecycles whose progress is read from Redis per round (oldest first)


@dataclass
class Lifecycle:
    kind: str
    ticket: str
    vid: str = ""
    completed: bool = False
    done: bool = False


@dataclass
class Run:
    profile: Profile
    n: int
    concurrency: int
    wall: float = 0.0  # first flag -> last outcome write
    gate_wall: float = 0.0  # first flag -> last gate write
    finished: int = 0
    calls: dict[str, float] = field(default_factory=dict)  # per system, per lifecycle
    cpu: CpuMeter | None = None
    rss: tuple[float, float, float] = (0.0, 0.0, 0.0)  # before, after, peak (MiB)
    retries: int = 0
    crashes: int = 0  # tasks that raised something the task code does not handle
    unfinished: dict[str, int] = field(default_factory=dict)  # where unfinished ones stopped
    failures: list[str] = field(default_factory=list)  # the bench's own calls that failed
    metrics: bool = True  # metrics_enabled in this run

    @property
    def rate(self) -> float:
        return self.finished / self.wall if self.wall else 0.0

    def vendor_seconds(self) -> float:
        """Time one lifecycle spends waiting on the simulators' added latency."""
        ticketing = sum(v for k, v in self.calls.items() if k != "incode")
        incode = self.calls.get("incode", 0.0)
        return ticketing * self.profile.ticketing + incode * self.profile.incode


def _create(bs: BenchStack, n: int) -> list[Lifecycle]:
    """N tickets, round-robin over the desk kinds, each with its own enrolled employee."""

    def make(i: int) -> Lifecycle:
        kind = bs.kinds[i % len(bs.kinds)]
        ticket = bs.drivers[kind].create_ticket(
            f"Employee {i}", f"tp-{i}@acme.test", "Locked out, unlock my account"
        )
        return Lifecycle(kind, ticket)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(make, range(n)))


def _guarded(failures: list[str], action: Callable[..., Any], *args: Any) -> None:
    """Run a people's action; a failure is recorded for the report, never silently lost."""
    try:
        action(*args)
    except Exception as exc:
        failures.append(f"{getattr(action, '__name__', action)}: {type(exc).__name__}: {exc}")


def _progress(
    bs: BenchStack, items: list[Lifecycle], complete: ThreadPoolExecutor, failures: list[str]
) -> None:
    """One round: learn verification ids, complete the gated, mark the written."""
    r = bs.redis
    for chunk in batched([x for x in items if not x.vid][:WINDOW], 500):
        pipe = r.pipeline(transaction=False)
        for x in chunk:
            pipe.get(bs.open_key(x.kind, x.ticket))
        for x, vid in zip(chunk, pipe.execute(), strict=True):
            x.vid = vid or ""
    gating = [x for x in items if x.vid and not x.completed][:WINDOW]
    writing = [x for x in items if x.completed and not x.done][:WINDOW]
    pipe = r.pipeline(transaction=False)
    for x in gating:
        pipe.hmget(bs.record_key(x.vid), ["gated", "interview_id"])
    for x in writing:
        pipe.hget(bs.record_key(x.vid), "written")
    answers = pipe.execute()
    for x, (gated, interview) in zip(gating, answers[: len(gating)], strict=True):
        if gated == "1" and interview:
            x.completed = True
            complete.submit(_guarded, failures, bs.s.complete, interview, "pass")
    for x, written in zip(writing, answers[len(gating) :], strict=True):
        x.done = bool(written)


def _unfinished(bs: BenchStack, items: list[Lifecycle]) -> dict[str, int]:
    """Where the lifecycles that did not finish in time stopped (state, gated, completed)."""
    stopped: dict[str, int] = {}
    for x in items:
        if x.done:
            continue
        state: str | None = None
        gated: str | None = None
        detail: str | None = None
        if x.vid:
            state, gated, detail = bs.redis.hmget(
                bs.record_key(x.vid), ["state", "gated", "detail"]
            )
        key = f"{state or 'no verification'}{', gated' if gated else ''}"
        key += f" ({detail[:80]})" if detail else ""
        key += ", completed" if x.completed else ""
        stopped[key] = stopped.get(key, 0) + 1
    return stopped


def _scraping(bs: BenchStack, stop: threading.Event) -> None:
    """Scrape both /metrics every ``SCRAPE_SECONDS``, as Prometheus would (three times as
    often as deploy/prometheus/prometheus.yml asks), so the "on" runs pay for scrapes too."""
    web = f"{bs.s.web_url}/metrics"
    with httpx.Client(timeout=5) as client:  # kept alive, as Prometheus keeps its connections
        while not stop.wait(SCRAPE_SECONDS):
            for url, headers in ((web, {"Authorization": f"Bearer {METRICS_TOKEN}"}),
                                 (bs.s.worker_metrics_url, {})):  # fmt: skip
                try:
                    client.get(url, headers=headers).raise_for_status()
                except httpx.HTTPError as exc:
                    print(f"scrape of {url} failed: {exc}", flush=True)


def run_once(
    profile: Profile,
    n: int,
    kinds: list[str],
    concurrency: int,
    timeout: float,
    raw: bool,
    metrics: bool = True,
) -> Run:
    employees = [f"tp-{i}@acme.test" for i in range(n)]
    run = Run(profile, n, concurrency, metrics=metrics)
    with BenchStack(
        kinds=kinds, employees=employees, concurrency=concurrency, raw_sandbox=raw,
        metrics=metrics,
    ) as bs:  # fmt: skip
        items = _create(bs, n)
        bs.set_latency(profile)
        bs.reset_calls()
        worker = bs.worker_pid()
        rss_before = memory_mib(worker)[0]
        lines_before = len(bs.s.children["worker"].lines)
        cpu = CpuMeter(bs.processes()).start()
        stop_scraping = threading.Event()
        if metrics:
            threading.Thread(target=_scraping, args=(bs, stop_scraping), daemon=True).start()
        started = time.time()
        deadline = time.monotonic() + timeout
        with (
            ThreadPoolExecutor(128) as flagging,
            ThreadPoolExecutor(64) as completing,
        ):
            for x in items:
                flagging.submit(_guarded, run.failures, bs.drivers[x.kind].flag, x.ticket)
            done = 0
            active = cpu
            while time.monotonic() < deadline and done < len(items):
                time.sleep(0.25)
                _progress(bs, items, completing, run.failures)
                if (now_done := sum(x.done for x in items)) > done:
                    # CPU up to the last lifecycle finished: waiting out the time limit for a
                    # straggler is idle time (polls, scrapes), not work per verification.
                    done, active = now_done, replace(cpu).stop()
        cpu = active
        stop_scraping.set()
        run.cpu = cpu
        run.unfinished = _unfinished(bs, items)
        rss_after, peak = memory_mib(worker)
        run.rss = (rss_before, rss_after, peak)
        lines = bs.s.children["worker"].lines[lines_before:]
        run.retries = sum('"will retry"' in line for line in lines)
        run.crashes = sum("raised unexpected" in line for line in lines)

        last_gate = last_outcome = started
        for kind in kinds:
            driver = bs.drivers[kind]
            calls = bs.calls(driver.system)
            ours = [c for c in calls if not driver.is_driver_call(f"{c['method']} {c['route']}")]
            run.calls[driver.system] = run.calls.get(driver.system, 0) + len(ours)
            for times in ticket_writes(calls, driver).values():
                last_gate = max(last_gate, times[0])
                if len(times) > 1:
                    last_outcome = max(last_outcome, times[1])
        run.calls["incode"] = len(bs.calls("incode"))
        bs.set_latency(PROFILES["none"])
        run.finished = sum(x.done for x in items)
        run.calls = {k: v / max(run.finished, 1) for k, v in run.calls.items()}
        run.wall = last_outcome - started
        run.gate_wall = last_gate - started
    return run


def report(runs: list[Run], args: argparse.Namespace) -> str:
    rows = []
    for r in runs:
        realistic = r.profile.name == "realistic"
        ceiling = r.concurrency / r.vendor_seconds() if r.vendor_seconds() else None
        rows.append(
            [
                f"{r.n:,}",
                r.profile.describe(),
                r.concurrency,
                f"{r.finished:,}",
                f"{r.wall:.1f} s" if r.finished == r.n else f"> {args.timeout:.0f} s",
                f"{r.n / r.gate_wall:.1f}/s" if r.gate_wall else "n/a",
                f"**{r.rate:.1f}/s**" if r.finished == r.n else "**did not finish**",
                f"{ceiling:.1f}/s" if ceiling else "CPU",
                ", ".join(f"{k} {v:.2f}" for k, v in r.calls.items()),
                f"{r.retries} / {r.crashes}",
                f"≥ {TARGET_RATE:.0f}/s" if realistic else "(context)",
                met(r.finished == r.n and r.rate >= TARGET_RATE) if realistic else "—",
            ]
        )
    headers = [
        "tickets",
        "latency",
        "threads",
        "done",
        "wall",
        "gated/s",
        "verifications/s",
        "thread bound",
        "calls/lifecycle",
        "retries / crashes",
        "target",
        "met?",
    ]
    notes = "\n".join(
        f"- {r.n:,}, {r.profile.describe()}, {r.concurrency} threads: "
        f"{r.cpu.summary(r.finished) if r.cpu else ''}; worker RSS {r.rss[0]:.0f} → "
        f"{r.rss[1]:.0f} MiB (peak {r.rss[2]:.0f})"
        + (f"; **unfinished**: {r.unfinished}" if r.unfinished else "")
        + (f"; **failed bench calls**: {len(r.failures)}: {r.failures[0]}" if r.failures else "")
        for r in runs
    )
    title = "2. Lifecycle throughput"
    if args.section != "throughput":
        title = "2b. Lifecycle throughput by worker threads (concurrency sweep)"
    return f"""### {title}

`python -m bench.throughput --tickets {args.tickets} --profiles {args.profiles} \
--concurrency {args.concurrency}` — {now_utc()}; {machine()}.
Desk kinds: {args.kinds}. One worker process (`--pool threads`), gunicorn 2 gevent workers,
a fresh system per row. *Thread bound* = threads / the added latency one lifecycle waits
through (its calls x their latency): the most a pool of that size can do however fast the CPU.
*Retries / crashes*: tasks that rescheduled themselves / tasks that raised an unhandled error
(worker log). A row with fewer done than tickets ran into its time limit.

{table(headers, rows)}

CPU per part over each run (ms per verification) and the worker's memory:

{notes}
"""


def metrics_cost_report(runs: list[Run], args: argparse.Namespace) -> str:
    """Section "metrics-cost": the same run with metrics on and off, alternated."""
    rows = [
        [i + 1, "on" if r.metrics else "off", f"{r.finished:,}", f"{r.wall:.1f} s",
         f"{r.rate:.1f}/s", r.cpu.summary(r.finished) if r.cpu else ""]
        for i, r in enumerate(runs)
    ]  # fmt: skip
    on = [r.rate for r in runs if r.metrics]
    off = [r.rate for r in runs if not r.metrics]
    ratio = statistics.median(on) / statistics.median(off)
    spread = max(off) / min(off) - 1 if off else 0.0
    return f"""### Metrics on and off

`python -m bench.throughput --metrics-cost --rounds {args.rounds} --tickets {args.tickets} \
--profiles {args.profiles} --concurrency {args.concurrency}` — {now_utc()}; {machine()}.
The throughput run of section 2, alternately with `metrics_enabled = true` (both /metrics
scraped every {SCRAPE_SECONDS:.0f} s during the run) and `false` (nothing recorded, no worker
metrics server), a fresh system per run. Alternating cancels slow drift in the machine's load.

{table(["run", "metrics", "done", "wall", "verifications/s", "CPU (ms per verification)"], rows)}

Median with metrics on: **{statistics.median(on):.1f}/s**; off: **{statistics.median(off):.1f}/s**;
on / off = **{ratio:.3f}** (target ≥ 0.95: {met(ratio >= 0.95)}). Noise: the "off" runs alone
spread by {spread:.1%} (fastest over slowest).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", default="1000,10000", help="comma-separated N")
    parser.add_argument("--profiles", default="none,realistic")
    parser.add_argument("--concurrency", default="128", help="worker threads, comma-separated")
    parser.add_argument("--kinds", default=",".join(DESKS), help="desk kinds, comma-separated")
    parser.add_argument("--timeout", type=float, default=540, help="seconds per run at most")
    parser.add_argument(
        "--raw-sandbox", action="store_true", help="simulators as threads of the bench process"
    )
    parser.add_argument("--section", default="throughput", help="docs section to replace")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--metrics-cost", action="store_true",
        help="alternate runs with metrics on and off (section metrics-cost)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="--metrics-cost: on/off pairs")
    args = parser.parse_args()
    if args.metrics_cost:
        # One size, one profile, one pool: the first of each list.
        n, name = int(args.tickets.split(",")[0]), args.profiles.split(",")[0]
        threads = int(args.concurrency.split(",")[0])
        cost_runs = []
        for i in range(2 * args.rounds):
            on = i % 2 == 0 if (i // 2) % 2 == 0 else i % 2 == 1  # on,off,off,on,on,off...
            run = run_once(PROFILES[name], n, args.kinds.split(","), threads, args.timeout,
                           args.raw_sandbox, metrics=on)  # fmt: skip
            print(f"metrics {'on' if on else 'off'}: {run.rate:.1f}/s", flush=True)
            cost_runs.append(run)
        text = metrics_cost_report(cost_runs, args)
        print(text)
        if not args.no_write:
            write_section("metrics-cost", text)
        return

    runs = []
    for n in (int(v) for v in args.tickets.split(",")):
        for name in args.profiles.split(","):
            for threads in (int(v) for v in args.concurrency.split(",")):
                kinds = args.kinds.split(",")
                run = run_once(PROFILES[name], n, kinds, threads, args.timeout, args.raw_sandbox)
                print(
                    f"{n} tickets, {name}, {threads} threads: {run.rate:.1f}/s "
                    f"({run.finished} done in {run.wall:.1f} s)",
                    flush=True,
                )
                runs.append(run)
    text = report(runs, args)
    print(text)
    if not args.no_write:
        write_section(args.section, text)


if __name__ == "__main__":
    main()
