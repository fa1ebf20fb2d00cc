"""``deskgate demo`` and ``deskgate dev``: the whole flow on one machine, no accounts needed."""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from redis.exceptions import RedisError

from config.privacy import display_url
from sandbox import demo_bypass, demo_idp
from sandbox.driver import DeskDriver
from sandbox.registry import DESKS, SIMULATORS
from sandbox.stack import METRICS_TOKEN, Stack, StackOptions, free_port, wait_for
from worker.dispatch import AUDIT_MARKERS, SWEEP

DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
WAIT = 30.0


def _redis_or_embedded() -> tuple[str, str, Any]:
    """The Redis at REDIS_URL if it answers, else an embedded one (fakeredis) on loopback."""
    url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    try:
        Redis.from_url(url, socket_connect_timeout=1).ping()
        return url, f"Redis at {display_url(url)}", None
    except (RedisError, OSError):
        pass
    try:
        from fakeredis import TcpFakeServer
    except ImportError:
        raise SystemExit(
            f"No Redis answers at {display_url(url)}, and the embedded fallback needs the demo "
            "extra: pip install 'deskgate[demo]'"
        ) from None
    port = free_port()
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"redis://127.0.0.1:{port}/0", f"embedded Redis (fakeredis) on :{port}", server


def _clear(url: str, prefix: str, queue: str) -> None:
    """Forget what an earlier run of the demo (or dev) left: its own keys (``prefix:*``) and its
    queue, never the rest of the database, which may be someone else's."""
    redis: Redis[str] = Redis.from_url(url, decode_responses=True)
    keys: list[str] = [*redis.scan_iter(f"{prefix}:*"), queue]
    if keys:
        redis.delete(*keys)
    redis.close()


@dataclass
class Case:
    desk: str
    who: str
    email: str | None
    enrolled: bool
    how: str  # "push", "poll", or "hand" (never flagged: an agent sets the verified marker)
    outcome: str  # what happens: pass, fail, review+pass, nothing, -; "lifted+": an agent
    # takes the held ticket off hold first
    expect: str  # the final marker
    ticket: str = ""
    actor: str = ""  # the agent who lifted the gate or set the marker, as the desk names them
    gate_ms: float | None = None
    outcome_ms: float | None = None


# (who, local part of the email or None, enrolled at Incode, how flagged, employee's part, expect)
SCRIPT: list[tuple[str, str | None, bool, str, str, str]] = [
    ("Ana Ruiz", "ana.ruiz", True, "push", "pass", "verified"),
    ("Ben Okafor", "ben.okafor", True, "push", "fail", "failed"),
    ("Caro Lind", "caro.lind", True, "push", "review+pass", "verified"),
    ("Dan Weiss", "dan.weiss", True, "push", "nothing", "expired"),
    ("Eve Tanaka", "eve.tanaka", True, "poll", "pass", "verified"),
    ("Finn Berg", "finn.berg", False, "push", "-", "error"),
    ("Gus (walk-in)", None, False, "push", "-", "error"),
    ("Hana Novak", "hana.novak", True, "push", "pass", "verified"),
    ("Ivo Marek", "ivo.marek", True, "push", "pass", "verified"),
    ("Jo Lindqvist", "jo.lindqvist", True, "push", "lifted+pass", "verified"),
    ("Kai Moreno", "kai.moreno", False, "hand", "-", "error"),
]
# Every desk simulator plays the script, its staff on a domain of their own ("ana.ruiz" is
# someone else on each desk).
CASES = [
    Case(kind, who, f"{local}@{kind}.acme.test" if local else None, enrolled, how, part, expect)
    for kind in DESKS
    for who, local, enrolled, how, part, expect in SCRIPT
]


def _marker_is(desk: DeskDriver, ticket: str, marker: str) -> Callable[[], bool]:
    return lambda: desk.view(ticket).marker == marker


def _timed(action: Callable[[], None], until: Callable[[], Any], what: str) -> float:
    start = time.perf_counter()
    action()
    wait_for(until, WAIT, what, every=0.005)
    return (time.perf_counter() - start) * 1000


def _play(stack: Stack, desk: DeskDriver, case: Case) -> None:
    case.ticket = desk.create_ticket(case.who, case.email, "Lost my phone, please reset my MFA")
    if case.how == "hand":  # the marker audit overturns it (after every case has played)
        case.actor = desk.set_marker(case.ticket, "verified")
        return
    if case.how == "poll":
        desk.set_push(False)  # no trigger fires: only the poller can find this ticket
        desk.flag(case.ticket)
        desk.set_push(True)
        wait_for(lambda: desk.notes(case.ticket), WAIT, f"the poller to gate #{case.ticket}")
    elif case.enrolled:
        case.gate_ms = _timed(
            lambda: desk.flag(case.ticket),
            lambda: desk.notes(case.ticket),
            f"the gate note on #{case.ticket}",
        )
    else:
        desk.flag(case.ticket)
        wait_for(lambda: desk.view(case.ticket).marker == "error", WAIT, "the error note")
        return
    session = stack.sessions(case.email)[0]["interviewId"]
    steps = [s for s in case.outcome.split("+") if s != "nothing"]
    if steps[:1] == ["lifted"]:  # an agent gets on with the work before the result
        case.actor = desk.lift_gate(case.ticket)
        steps = steps[1:]
    for step in steps:
        expected = "review" if step == "review" else case.expect

        def complete(step: str = step) -> None:
            stack.complete(session, step)

        def landed(expected: str = expected) -> bool:
            return desk.view(case.ticket).marker == expected

        elapsed = _timed(complete, landed, f"the {expected} note on #{case.ticket}")
        if step == steps[-1]:
            case.outcome_ms = elapsed


def _timeline(desk: DeskDriver, case: Case) -> list[str]:
    view = desk.view(case.ticket)
    lines = [
        f"{case.desk:<10} {view.display:<10} {case.who} ({case.how}; employee: {case.outcome})"
    ]
    for note in desk.notes(case.ticket):
        lines.append(f"    note: {note.splitlines()[0]}")
        lines += [f"          {line}" for line in note.splitlines() if "was lifted" in line]
    lines.append(f"    status: {view.status}   marker: {view.marker}")
    return lines


def _median(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.median(present):.0f} ms" if present else "n/a"


def metrics_banner(stack: Stack) -> str:
    """Where the stack's two /metrics answer (docs/metrics.md)."""
    return (
        f"  metrics (web)      curl -H 'Authorization: Bearer {METRICS_TOKEN}' "
        f"{stack.web_url}/metrics\n"
        f"  metrics (worker)   curl {stack.worker_metrics_url}"
    )


def _scraped(url: str, token: str | None = None) -> dict[str, float]:
    """Each metric's samples summed over their labels, by sample name with labels k=v."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    text = httpx.get(url, headers=headers, timeout=5).text
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key in (sample.name, *(f"{sample.name} {k}={v}" for k, v in sample.labels.items())):
                sums[key] = sums.get(key, 0.0) + sample.value
    return sums


def metrics_summary(stack: Stack) -> str:
    """A few figures from both endpoints, read before the stack stops."""
    web = _scraped(f"{stack.web_url}/metrics", METRICS_TOKEN)
    worker = _scraped(stack.worker_metrics_url)

    def line(source: dict[str, float], name: str, labels: list[str]) -> str:
        return ", ".join(f"{label.split('=')[1]} {source.get(f'{name} {label}', 0):.0f}"
                         for label in labels)  # fmt: skip

    deliveries = line(
        web,
        "deskgate_webhook_deliveries_total",
        ["result=accepted", "result=duplicate", "result=refused"],
    )
    calls = line(worker, "deskgate_outside_requests_total", [f"system={s}" for s in SIMULATORS])
    finished = line(
        worker,
        "deskgate_verifications_finished_total",
        [f"outcome={o}" for o in ("verified", "failed", "expired", "error")],
    )
    started = worker.get("deskgate_verifications_started_total", 0)
    tasks = line(worker, "deskgate_tasks_total", ["result=done", "result=retried"])
    bypasses = line(worker, "deskgate_idp_bypasses_total", ["severity=high", "severity=medium"])
    return "\n".join([
        "Metrics, as scraped before the stack stopped:",
        f"  webhook deliveries: {deliveries}",
        f"  outside calls:      {calls}",
        f"  verifications:      started {started:.0f}, {finished}",
        f"  tasks:              {tasks}",
        f"  IdP bypasses:       {bypasses}",
    ])  # fmt: skip


def run_demo(keep_redis: bool = False) -> int:
    url, which, embedded = _redis_or_embedded()
    print(f"Deskgate demo: using {which}")
    prefix, queue = "demo", "deskgate-demo"
    idp_prefix, idp_queue = "demo-idp", "deskgate-demo-idp"  # the IdP part's own stack
    if not keep_redis:
        _clear(url, prefix, queue)
        _clear(url, idp_prefix, idp_queue)
    employees = frozenset(c.email for c in CASES if c.email and c.enrolled)
    options = StackOptions(
        redis_url=url,
        key_prefix=prefix,
        queue=queue,
        employees=employees,
        poll_interval_seconds=5,
        idp_poll_interval_seconds=demo_bypass.POLL_SECONDS,
        beat=True,
        log_format="json",
    )
    failures: list[str] = []
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    with Stack(options) as stack:
        print(f"  stack up: webhook app {stack.web_url}, logs in {stack.workdir}")
        print(_provisioned(stack))
        print(f"{metrics_banner(stack)}   (while the demo runs)\n")
        desks = {kind: stack.driver(kind) for kind in DESKS}
        for case in CASES:
            _play(stack, desks[case.desk], case)
        # Dan never opens his link: run the sweep as of 31 minutes from now (links last 30).
        stack.send_task(SWEEP, time.time() + 31 * 60)
        for dan in (c for c in CASES if c.expect == "expired"):
            wait_for(_marker_is(desks[dan.desk], dan.ticket, "expired"), WAIT, "the expiry")
        # The marker audit (beat runs it every marker_audit_interval_seconds): now, once.
        for desk in desks.values():
            stack.send_task(AUDIT_MARKERS, desk.desk)
        for kai in (c for c in CASES if c.how == "hand"):
            wait_for(_marker_is(desks[kai.desk], kai.ticket, "error"), WAIT, "the overturn")
        time.sleep(0.5)  # let any stray duplicate act, so the timelines would show it
        for case in CASES:
            desk = desks[case.desk]
            print("\n".join(_timeline(desk, case)))
            marker = desk.view(case.ticket).marker
            if marker != case.expect:
                failures.append(f"{case.desk} {case.ticket}: expected {case.expect}, got {marker}")
            failures += _flagged(desk, case)
        sessions = stack.sessions()
        print(
            f"\nIncode sessions requested: {len(sessions)} for "
            f"{sum(1 for c in CASES if c.enrolled)} enrolled employees"
        )
        print(f"tag -> gate note (push):        median {_median([c.gate_ms for c in CASES])}")
        print(f"Incode webhook -> outcome note: median {_median([c.outcome_ms for c in CASES])}")
        failures += demo_bypass.run(stack)
        print(f"\n{metrics_summary(stack)}")
        failures += _report(stack, since)
    failures += demo_idp.run(url, idp_prefix, idp_queue, since)
    if embedded is not None:
        embedded.shutdown()
    if failures:
        print("\nDEMO FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nDemo complete: every ticket ended where it should, and every bypass was told.")
    return 0


def _flagged(desk: DeskDriver, case: Case) -> list[str]:
    """A lifted gate must be named, with who lifted it, in the outcome note; a hand-set marker
    must be overturned with a note saying so."""
    notes = "\n".join(desk.notes(case.ticket))
    if case.outcome.startswith("lifted") and f"before the result, by {case.actor}" not in notes:
        return [f"{case.desk} {case.ticket}: the outcome note does not say {case.actor} lifted it"]
    if case.how == "hand" and "OVERTURNED" not in notes:
        return [f"{case.desk} {case.ticket}: no note says the hand-set marker was overturned"]
    return []


def _report(stack: Stack, since: str) -> list[str]:
    """``deskgate report`` over the demo's run, printed; what it counts that the demo did not do
    (per desk: verifications, and each outcome the script expects) comes back as failures."""
    shown = stack.command("report", "--since", since)
    print(f"\n$ deskgate report --since {since}\n{shown.stdout}{shown.stderr}")
    done = stack.command("report", "--since", since, "--format", "json")
    if done.returncode != 0:
        return [f"deskgate report failed: {done.stderr.strip()}"]
    counted: dict[str, Counter[str]] = {}
    data = json.loads(done.stdout)
    for group in data["groups"]:
        tally = counted.setdefault(group["desk"], Counter())
        for field in ("verifications", "verified", "failed", "expired", "error", "gates_lifted"):
            tally[field] += group[field]
        # No desk here has an IdP: no grant is opened and no action performed.
        tally.update({f"grants_{k}": v for k, v in group["grants"].items()})
        tally.update({f"actions_{k}": v for k, v in group["actions"].items()})
    for overturned in data["markers_overturned"]:
        counted.setdefault(overturned["desk"], Counter())["overturned"] += overturned["count"]
    failures = []
    for name, kind in stack.desk_kinds().items():
        cases = [c for c in CASES if c.desk == kind and c.how != "hand"]
        expected = (
            Counter({"verifications": len(cases)})
            + Counter(c.expect for c in cases)
            + Counter("gates_lifted" for c in cases if c.outcome.startswith("lifted"))
            + Counter("overturned" for c in CASES if c.desk == kind and c.how == "hand")
        )
        if +counted.get(name, Counter()) != expected:
            got = dict(counted.get(name, {}))
            failures.append(f"report for {name}: {got}, expected {dict(expected)}")
    return failures


DEV_PORTS = {
    "web": 8000,
    "metrics": 8100,  # the worker's /metrics
    **{name: sim.dev_port for name, sim in SIMULATORS.items()},
}
DEV_EMPLOYEES = frozenset({"jane.doe@acme.test", "sam.lee@acme.test", "kim.park@acme.test"})


def _provisioned(stack: Stack) -> str:
    """What `deskgate setup` did to the empty desk simulators before Deskgate started."""
    lines = "\n".join(f"    {line}" for line in stack.setup_output if not line.startswith("To "))
    return f"  provisioned by `deskgate setup`:\n{lines}\n"


def dev_banner(stack: Stack) -> str:
    """Where each part of the dev stack answers, and the credentials to call it with."""
    # The systems that push to Deskgate: the desks and Incode (an IdP is only read).
    hooks = ", ".join(f"/webhooks/{name}" for name in (*DESKS, "incode"))
    sims = "\n".join(
        sim.banner(stack.urls[name], stack.app_configs[name]) for name, sim in SIMULATORS.items()
    )
    commands = stack.write_command_env()
    # The command beside this interpreter (the venv's), so it runs from a shell without the venv.
    installed = Path(sys.executable).with_name("deskgate")
    deskgate = str(installed) if installed.exists() else "deskgate"
    return f"""  webhook app        {stack.web_url}   (POST {hooks}; GET /readyz)
{sims}
{metrics_banner(stack)}
  logs               {stack.workdir}
{_provisioned(stack)}
  deskgate commands against this stack, in another shell:
    set -a; . {commands}; set +a
    {deskgate} doctor
    {deskgate} report --since 1h --html report.html
    {deskgate} audit export --since 1h
  (the work folder, with its logs and that file, goes when dev stops)
"""


def run_dev(host: str = "127.0.0.1", keep_redis: bool = False) -> int:
    url, which, embedded = _redis_or_embedded()
    prefix, queue = "dev", "deskgate-dev"
    if not keep_redis:
        # The simulators start empty: what an earlier run recorded under the same ticket ids
        # would stand in for this run's tickets (ticket 1's verification, already gated).
        _clear(url, prefix, queue)
    options = StackOptions(
        redis_url=url,
        ports=DEV_PORTS,
        host=host,
        key_prefix=prefix,
        queue=queue,
        employees=DEV_EMPLOYEES,
        poll_interval_seconds=15,
        beat=True,
        log_format="console",
    )
    with Stack(options) as stack:
        print(f"Deskgate dev stack is up ({which}); Ctrl-C stops it.\n{dev_banner(stack)}")
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    if embedded is not None:
        embedded.shutdown()
    return 0


# -- the ``deskgate.commands`` plug-ins (pyproject.toml): ``deskgate demo`` and ``deskgate dev`` --


def demo_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="deskgate demo", description="Run the whole flow on the sandbox and print timelines."
    )
    parser.add_argument(
        "--keep-redis", action="store_true", help="keep what an earlier demo left in Redis"
    )
    args = parser.parse_args(argv)
    return run_demo(keep_redis=args.keep_redis)


def dev_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="deskgate dev", description="Run the sandbox and Deskgate until interrupted."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--keep-redis", action="store_true", help="keep what an earlier dev run left in Redis"
    )
    args = parser.parse_args(argv)
    return run_dev(host=args.host, keep_redis=args.keep_redis)
