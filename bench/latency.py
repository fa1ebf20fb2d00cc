"""Benchmark 1, reaction latency: how long an agent waits.

Tickets are flagged one at a time at a steady rate (an agent adds the trigger tag; the desk's
trigger pushes a signed webhook to Deskgate); each employee completes Incode's check ``--hold``
seconds later (Incode's session webhook). Measured per ticket:

- tag -> gate note: from the moment the desk acknowledged the agent's update to the moment it
  acknowledged Deskgate's gate write (the simulator's call log, same clock);
- Incode webhook -> outcome note: from Incode sending the session webhook to the outcome write.

Run ``python -m bench.latency`` (about 3 minutes); ``--help`` for the knobs.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.harness import (
    PROFILES,
    BenchStack,
    CpuMeter,
    Profile,
    machine,
    met,
    ms,
    now_utc,
    percentile,
    table,
    ticket_writes,
    write_section,
)
from sandbox.stack import wait_until

TARGET_P50 = 0.100
TARGET_P99 = 0.500
WARMUP = 5  # lifecycles run first and not counted: token fetches, connection set-up


@dataclass
class Case:
    kind: str
    ticket: str
    employee: str
    flagged_at: float = 0.0  # the desk acknowledged the agent's update
    webhook_at: float = 0.0  # Incode sent the session webhook
    vid: str = ""
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Result:
    profile: Profile
    kind: str
    gate: list[float]
    outcome: list[float]
    missing: int
    cpu: CpuMeter


def _gated(bs: BenchStack, case: Case, timeout: float) -> str:
    """Wait until Deskgate has gated the ticket; return the Incode session id."""
    found: dict[str, str] = {}

    def check() -> bool:
        vid = case.vid or bs.redis.get(bs.open_key(case.kind, case.ticket)) or ""
        if not vid:
            return False
        case.vid = vid
        gated, interview = bs.redis.hmget(bs.record_key(vid), ["gated", "interview_id"])
        if gated == "1" and interview:
            found["iv"] = interview
            return True
        return False

    wait_until(check, timeout, every=0.005)
    return found.get("iv", "")


def _play(bs: BenchStack, cases: list[Case], rate: float, hold: float) -> None:
    """Flag case i at i/rate seconds, complete it ``hold`` seconds later, both on schedule."""
    start = time.time() + 0.5

    def flag(case: Case) -> None:
        bs.drivers[case.kind].flag(case.ticket)
        case.flagged_at = time.time()

    def complete(case: Case) -> None:
        interview = _gated(bs, case, timeout=30)
        if not interview:
            case.done.set()
            return
        case.webhook_at = time.time()
        bs.s.complete(interview, "pass")  # delivers the session webhook synchronously
        case.done.set()

    events = [(start + i / rate, flag, c) for i, c in enumerate(cases)]
    events += [(start + i / rate + hold, complete, c) for i, c in enumerate(cases)]
    events.sort(key=lambda e: e[0])
    with ThreadPoolExecutor(32) as pool:
        for at, action, case in events:
            time.sleep(max(0.0, at - time.time()))
            pool.submit(action, case)
    for case in cases:
        case.done.wait(60)


def _outcomes_written(bs: BenchStack, cases: list[Case]) -> bool:
    pipe = bs.redis.pipeline(transaction=False)
    for case in cases:
        pipe.hget(bs.record_key(case.vid), "written")
    return all(w == "verified" for w in pipe.execute())


def run_profile(bs: BenchStack, profile: Profile, n: int, rate: float, hold: float) -> list[Result]:
    kinds = bs.kinds
    cases = []
    for i in range(n + WARMUP * len(kinds)):
        kind = kinds[i % len(kinds)]
        employee = f"lat-{profile.name}-{i}@acme.test"
        ticket = bs.drivers[kind].create_ticket(f"Employee {i}", employee, "New phone, reset MFA")
        cases.append(Case(kind, ticket, employee))
    bs.set_latency(profile)
    warmup, measured = cases[: WARMUP * len(kinds)], cases[WARMUP * len(kinds) :]
    _play(bs, warmup, rate, hold)
    cpu = CpuMeter(bs.processes()).start()
    _play(bs, measured, rate, hold)
    wait_until(lambda: _outcomes_written(bs, measured), timeout=60, every=0.2)
    cpu.stop()
    bs.set_latency(PROFILES["none"])

    results = []
    for kind in kinds:
        driver = bs.drivers[kind]
        writes = ticket_writes(bs.calls(driver.system), driver)
        gate, outcome, missing = [], [], 0
        for case in (c for c in measured if c.kind == kind):
            times = writes.get(case.ticket, [])
            if len(times) < 2 or not case.webhook_at:
                missing += 1
                continue
            gate.append(times[0] - case.flagged_at)
            outcome.append(times[1] - case.webhook_at)
        results.append(Result(profile, kind, gate, outcome, missing, cpu))
    return results


def _row(what: str, values: list[float], target: bool) -> list[str]:
    p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
    ok = p50 <= TARGET_P50 and p99 <= TARGET_P99 if target else None
    goal = f"p50 ≤ {ms(TARGET_P50)}, p99 ≤ {ms(TARGET_P99)}" if target else "(context)"
    return [what, str(len(values)), ms(p50), ms(p95), ms(p99), ms(max(values)), goal, met(ok)]


def report(results: list[Result], args: argparse.Namespace) -> str:
    rows = []
    for r in results:
        target = r.profile.name == "none"
        label = f"{r.kind}, {r.profile.describe()}"
        rows.append(_row(f"tag → gate note ({label})", r.gate, target))
        rows.append(_row(f"Incode webhook → outcome note ({label})", r.outcome, target))
    headers = ["path", "n", "p50", "p95", "p99", "max", "target", "met?"]
    cpu = "\n".join(
        f"- CPU while measuring, {r.profile.describe()}: {r.cpu.summary(len(r.gate))}"
        for r in results
        if r.kind == results[0].kind
    )
    missing = sum(r.missing for r in results)
    return f"""### 1. Reaction latency

`python -m bench.latency --tickets {args.tickets} --rate {args.rate}` — {now_utc()}; {machine()}.
Settings: {args.rate:g} tickets/s flagged one at a time, each completed {args.hold:g} s later;
worker `--pool threads --concurrency {args.concurrency}`, gunicorn 2 gevent workers;
{WARMUP} warm-up lifecycles per profile not counted; {missing} lifecycles missing.

{table(headers, [*rows])}

{cpu}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=300, help="per latency profile")
    parser.add_argument("--rate", type=float, default=5.0, help="tickets flagged per second")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds from flag to complete")
    parser.add_argument("--profiles", default="none,realistic")
    parser.add_argument("--kinds", default="zendesk", help="desk kinds, comma-separated")
    parser.add_argument("--concurrency", type=int, default=32, help="worker threads")
    parser.add_argument(
        "--raw-sandbox", action="store_true", help="simulators as threads of the bench process"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    kinds = args.kinds.split(",")
    results: list[Result] = []
    employees = [
        f"lat-{p}-{i}@acme.test"
        for p in args.profiles.split(",")
        for i in range(args.tickets + WARMUP * len(kinds))
    ]
    with BenchStack(
        kinds=kinds,
        employees=employees,
        concurrency=args.concurrency,
        raw_sandbox=args.raw_sandbox,
    ) as bs:
        for name in args.profiles.split(","):
            results += run_profile(bs, PROFILES[name], args.tickets, args.rate, args.hold)
    text = report(results, args)
    print(text)
    if not args.no_write:
        write_section("latency", text)


if __name__ == "__main__":
    main()
