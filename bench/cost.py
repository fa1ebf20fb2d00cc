"""Benchmark 4, cost per verification: what one lifecycle asks of each outside system, what the
safety-net poll costs per desk per minute as history grows, Redis memory per verification and
its retention, and the worker's memory.

- calls per lifecycle: ``--lifecycles`` verified lifecycles started by push, as many started by
  the poll (trigger off), counted by the simulators (people's own calls left out);
- pushes per lifecycle on Zendesk, whose triggers run on every update: the trigger
  ``deskgate setup`` wrote against the tag-only one it replaced (an admin's edit through the
  API, repaired by running setup again), without and with a requester's reply while the ticket
  waits for the employee (``--calls-only`` runs these two parts alone, in about a minute);
- poll and sweep cost with 0, 1,000 and 100,000 finished verifications stored (seeded as
  copies of a real finished record, with its TTLs), and with 1,000 verifications open (gated,
  waiting for the employee): the desk calls each poll makes and the Redis commands each poll and
  sweep sends (Redis MONITOR, the broker's own BRPOP loop left out);
- memory: Redis bytes per verification by key family (MEMORY USAGE), keys left without a TTL,
  and the worker's RSS.

Run ``python -m bench.cost`` (about 3 minutes).
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from collections import Counter
from typing import Any

import httpx

from bench.harness import (
    KEY_PREFIX,
    BenchStack,
    batched,
    machine,
    memory_mib,
    met,
    now_utc,
    table,
    write_section,
)
from connectors.zendesk import objects
from sandbox.registry import SIMULATORS
from sandbox.stack import wait_until
from sandbox.zendesk_driver import DESK, ZendeskDriver
from worker.dispatch import POLL_DESK, SWEEP

DEFAULT_HISTORY = "0,1000,100000"
OPEN_LEVEL = 1000


def _employee(tag: str, i: int) -> str:
    return f"cost-{tag}-{i}@acme.test"


def _deskgate_calls(bs: BenchStack, kind: str) -> dict[str, dict[str, int]]:
    """Deskgate's calls since the last reset: {system: {"METHOD route": count}}."""
    driver = bs.drivers[kind]
    out: dict[str, dict[str, int]] = {}
    for system in (driver.system, "incode"):
        counts: Counter[str] = Counter()
        for call in bs.calls(system):
            key = f"{call['method']} {call['route']}"
            if system == driver.system and driver.is_driver_call(key):
                continue
            counts[key] += 1
        out[system] = dict(counts)
    return out


def _lifecycles(
    bs: BenchStack, kind: str, n: int, tag: str, push: bool, replies: int = 0
) -> dict[str, Any]:
    """Run ``n`` verified lifecycles, with ``replies`` requester replies (Zendesk) on each
    gated ticket; return Deskgate's calls per lifecycle by route."""
    driver = bs.drivers[kind]
    tickets = [
        (driver.create_ticket(f"E {i}", _employee(tag, i), "MFA reset"), _employee(tag, i))
        for i in range(n)
    ]
    driver.set_push(push)
    bs.reset_calls()
    for ticket, _ in tickets:
        driver.flag(ticket)
    if not push:
        bs.s.send_task(POLL_DESK, driver.desk)

    def gated() -> bool:
        return all(driver.view(t).marker == "pending" for t, _ in tickets)

    if not wait_until(gated, 60, every=0.2):
        raise RuntimeError(f"{tag}: not every ticket was gated")
    for ticket, _ in tickets:
        for _ in range(replies):
            _reply(bs, ticket)
    for _, email in tickets:
        for session in bs.s.sessions(email):
            bs.s.complete(session["interviewId"], "pass")

    def verified() -> bool:
        return all(driver.view(t).marker == "verified" for t, _ in tickets)

    if not wait_until(verified, 60, every=0.2):
        raise RuntimeError(f"{tag}: not every ticket was verified")
    driver.set_push(True)
    time.sleep(1)  # pushes still on their way are counted too
    calls = _deskgate_calls(bs, kind)
    if replies:  # the requesters' replies share Deskgate's route: leave them out
        calls[driver.system][REPLY_ROUTE] -= replies * n
    if kind == "zendesk":
        pushed = _pushes(bs, {int(t) for t, _ in tickets})
        calls["pushes"] = {"webhook deliveries (first attempts)": pushed}
    return {
        system: {route: count / n for route, count in routes.items()}
        for system, routes in calls.items()
    }


REPLY_ROUTE = "PUT /api/v2/tickets/<int:ticket_id>"


def _reply(bs: BenchStack, ticket: str) -> None:
    """The requester answers on the ticket (a public comment), as people do while waiting."""
    driver = bs.drivers["zendesk"]
    assert isinstance(driver, ZendeskDriver)
    requester = driver.raw(ticket)["ticket"]["requester_id"]
    comment = {"body": "Any news? I still cannot log in.", "author_id": requester}
    driver.api.put(f"/tickets/{ticket}.json", json={"ticket": {"comment": comment}})


def _pushes(bs: BenchStack, tickets: set[int]) -> int:
    """Webhook invocations the Zendesk simulator made for ``tickets`` (retries not counted)."""
    log = bs.sim("zendesk").get("/_sandbox/webhook_deliveries").json()["deliveries"]
    return len({d["invocation_id"] for d in log if d["ticket_id"] in tickets})


def _tag_only(trigger: dict[str, Any]) -> dict[str, Any]:
    """The trigger the set-up documented before: "a trigger tag is on it", nothing more."""
    conditions = [c for c in trigger["conditions"]["all"] if c["operator"] != "not_includes"]
    return {**trigger, "conditions": {"all": conditions, "any": []}}


TRIGGER_SHAPES = {
    "as `deskgate setup` writes it": lambda trigger: trigger,
    "tag only (before)": _tag_only,
}
TRIGGER_FIELDS = ("title", "active", "conditions", "actions", "category_id")


def _trigger_costs(bs: BenchStack, n: int) -> list[list[str]]:
    """Pushes and Zendesk calls per push-started lifecycle, per trigger, with 0 and 1 replies."""
    admin_user, token = SIMULATORS["zendesk"].admin or ("", "")
    admin = httpx.Client(
        base_url=f"{bs.sim('zendesk').base_url}/api/v2", auth=(f"{admin_user}/token", token)
    )
    title = objects.trigger_title(DESK)
    found = admin.get("/triggers/search.json", params={"query": title}).json()["triggers"]
    deskgate = next(t for t in found if t["title"] == title)
    rows = []
    try:
        for i, (name, shape) in enumerate(TRIGGER_SHAPES.items()):
            whole = {k: v for k, v in shape(deskgate).items() if k in TRIGGER_FIELDS}
            path = f"/triggers/{deskgate['id']}.json"
            admin.put(path, json={"trigger": whole}).raise_for_status()
            for replies in (0, 1):
                got = _lifecycles(bs, "zendesk", n, f"t{i}r{replies}", push=True, replies=replies)
                calls = got["zendesk"]
                rows.append(
                    [
                        name,
                        str(replies),
                        f"**{got['pushes']['webhook deliveries (first attempts)']:.2f}**",
                        f"{calls.get('GET /api/v2/tickets/<int:ticket_id>', 0):.2f}",
                        f"{calls.get(REPLY_ROUTE, 0):.2f}",
                        f"**{sum(calls.values()):.2f}**",
                    ]
                )
    finally:
        admin.close()
        repaired = bs.s.setup_command(DESK)  # setup writes its trigger back
        if repaired.returncode != 0 or "update" not in repaired.stdout:
            raise RuntimeError(f"deskgate setup did not repair the trigger: {repaired.stdout}")
    return rows


class Monitor:
    """Redis MONITOR on the benches' database for the duration of a block; counts commands
    by name, leaving out the broker's idle BRPOP loop and MONITOR's own bookkeeping."""

    IGNORED = frozenset({"BRPOP", "MONITOR", "INFO", "PING"})

    def __init__(self, bs: BenchStack) -> None:
        self.bs = bs
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._db = str(bs.redis.connection_pool.connection_kwargs.get("db", 0))

    def __enter__(self) -> Monitor:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.2)
        return self

    def _run(self) -> None:
        with self.bs.redis.monitor() as monitor:
            for event in monitor.listen():
                if self._stop.is_set():
                    return
                if str(event.get("db")) != self._db:
                    continue
                name = str(event.get("command", "")).split(" ", 1)[0].strip('"').upper()
                if name and name not in self.IGNORED:
                    self.counts[name] += 1

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        self.bs.redis.ping()  # wakes the listener so it sees the stop
        self._thread.join(5)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


_SUCCEEDED = re.compile(r"Task (deskgate\.\w+)\[[^\]]+\] succeeded in ([0-9.]+)s")


def _task_times(bs: BenchStack, since: int, name: str) -> list[float]:
    lines = bs.s.children["worker"].lines[since:]
    return [float(m.group(2)) for ln in lines if (m := _SUCCEEDED.search(ln)) and m[1] == name]


def _finished(bs: BenchStack, since: int, name: str, count: int) -> bool:
    return len(_task_times(bs, since, name)) >= count


def _measure_polls(bs: BenchStack, kind: str, polls: int) -> dict[str, float]:
    """Run ``polls`` polls and as many sweeps, one at a time."""
    driver = bs.drivers[kind]
    out: dict[str, float] = {}
    for task, args in ((POLL_DESK, [driver.desk]), (SWEEP, [])):
        bs.reset_calls()
        since = len(bs.s.children["worker"].lines)
        with Monitor(bs) as mon:
            for i in range(polls):
                bs.s.send_task(task, *args)

                def ran(i: int = i, t: str = task, s: int = since) -> bool:
                    return len(_task_times(bs, s, t)) > i

                wait_until(ran, 60, every=0.02)
        times = _task_times(bs, since, task)
        short = task.rsplit(".", 1)[-1]
        out[f"{short} redis"] = mon.total / polls
        out[f"{short} ms"] = sum(times) / len(times) * 1000 if times else float("nan")
        if task == POLL_DESK:
            calls = _deskgate_calls(bs, kind)[driver.system]
            out["poll desk calls"] = sum(calls.values()) / polls
    return out


def _finished_template(bs: BenchStack) -> tuple[str, dict[str, str], str]:
    """A real finished verification: its record and its interview key, to copy."""
    for key in bs.redis.scan_iter(f"{KEY_PREFIX}:v:*", count=1000):
        record = bs.redis.hgetall(key)
        if record.get("state") == "verified":
            return key.rsplit(":", 1)[-1], record, record.get("interview_id", "")
    raise RuntimeError("no finished verification to copy")


def _seed_history(bs: BenchStack, upto: int, have: int, template: dict[str, str]) -> None:
    """Copies of a finished verification (record + session index, same TTL) up to ``upto``."""
    ttl = max(int(bs.redis.ttl(f"{KEY_PREFIX}:v:{template['id']}")), 1)
    pipe = bs.redis.pipeline(transaction=False)
    for chunk in batched(range(have, upto), 2000):
        for i in chunk:
            vid, interview = f"h{i:024d}", f"hist{i:020d}"
            record: dict[str | bytes, str] = {k: v for k, v in template.items()}
            record.update(id=vid, interview_id=interview, ticket_id=str(10**7 + i))
            pipe.hset(f"{KEY_PREFIX}:v:{vid}", mapping=record)
            pipe.expire(f"{KEY_PREFIX}:v:{vid}", ttl)
            pipe.set(f"{KEY_PREFIX}:iv:{interview}", vid, ex=ttl)
        pipe.execute()


def _family(key: str) -> str:
    parts = key.split(":")
    return ":".join(parts[:2]) + (":*" if len(parts) > 2 else "")


def _memory(bs: BenchStack, verifications: int) -> tuple[list[list[str]], int]:
    """Bytes per verification by key family, and how many keys have no TTL."""
    usage: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    persistent: Counter[str] = Counter()
    for key in bs.redis.scan_iter(f"{KEY_PREFIX}:*", count=1000):
        family = _family(key)
        usage[family] += int(bs.redis.memory_usage(key) or 0)
        keys[family] += 1
        if bs.redis.ttl(key) == -1:
            persistent[family] += 1
    rows = []
    for family in sorted(usage):
        ttl = "none" if persistent[family] == keys[family] else "all have one"
        if 0 < persistent[family] < keys[family]:
            ttl = f"{persistent[family]} without"
        rows.append(
            [
                f"`{family}`",
                str(keys[family]),
                f"{usage[family] / verifications:.0f} B",
                ttl,
            ]
        )
    return rows, sum(persistent.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifecycles", type=int, default=20, help="per path")
    parser.add_argument("--history", default=DEFAULT_HISTORY, help="stored verifications")
    parser.add_argument("--polls", type=int, default=5, help="polls and sweeps per level")
    parser.add_argument("--kind", default="zendesk", help="desk kind")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--calls-only",
        action="store_true",
        help="only calls and pushes per lifecycle (the triggers section); no poll or memory",
    )
    args = parser.parse_args()
    kind, n = args.kind, args.lifecycles
    employees = [_employee(t, i) for t in ("push", "poll") for i in range(n)]
    employees += [_employee(f"t{t}r{r}", i) for t in (0, 1) for r in (0, 1) for i in range(n)]
    if not args.calls_only:
        employees += [_employee("open", i) for i in range(OPEN_LEVEL)]

    with BenchStack(kinds=[kind], employees=employees, concurrency=32) as bs:
        driver = bs.drivers[kind]
        rss_start = memory_mib(bs.worker_pid())[0]
        push = _lifecycles(bs, kind, n, "push", push=True)
        poll = _lifecycles(bs, kind, n, "poll", push=False)
        triggers = _trigger_costs(bs, n) if kind == "zendesk" else []
        calls_text = calls_report(push, poll, triggers, args)
        if args.calls_only:
            print(calls_text)
            if not args.no_write:
                write_section("triggers", calls_text)
            return
        memory_rows, persistent = _memory(bs, 2 * n)
        _, template, _ = _finished_template(bs)

        levels: list[tuple[str, dict[str, float]]] = []
        have = 0
        bulk_per_verification = 0.0
        for level in (int(v) for v in args.history.split(",")):
            before = int(bs.redis.info("memory")["used_memory"])
            _seed_history(bs, level, have, template)
            if level - have >= 10_000:  # large enough for used_memory to mean something
                grown = int(bs.redis.info("memory")["used_memory"]) - before
                bulk_per_verification = grown / (level - have)
            have = max(have, level)
            levels.append((f"{level:,} finished", _measure_polls(bs, kind, args.polls)))
        # Verifications in flight: gated tickets that the poll's search still returns.
        tickets = [
            driver.create_ticket(f"O {i}", _employee("open", i), "MFA reset")
            for i in range(OPEN_LEVEL)
        ]
        for ticket in tickets:
            driver.flag(ticket)
        wait_until(lambda: int(bs.redis.zcard(f"{KEY_PREFIX}:due")) >= OPEN_LEVEL, 120, every=0.5)
        time.sleep(2)
        levels.append(
            (f"{have:,} finished + {OPEN_LEVEL:,} open", _measure_polls(bs, kind, args.polls))
        )
        rss_end, rss_peak = memory_mib(bs.worker_pid())
        interval = bs.options.poll_interval_seconds

    text = report(
        push, poll, levels, memory_rows, persistent, bulk_per_verification,
        (rss_start, rss_end, rss_peak), interval, args, driver.system,
    )  # fmt: skip
    print(text + "\n" + calls_text)
    if not args.no_write:
        write_section("cost", text)
        write_section("triggers", calls_text)


def calls_report(
    push: dict[str, Any],
    poll: dict[str, Any],
    triggers: list[list[str]],
    args: argparse.Namespace,
) -> str:
    """The calls and pushes per lifecycle, on their own (``--calls-only`` writes only this)."""
    text = f"""### 4b. Calls and pushes per lifecycle, by Zendesk trigger

`python -m bench.cost --calls-only` — {now_utc()}; {machine()}.
{args.lifecycles} verified lifecycles per row on the {args.kind} desk, started by push (and by
the poll, push off, in the first table); Deskgate's calls as the simulators logged them, per
lifecycle; pushes are the webhook invocations the Zendesk simulator made for those tickets.

{table(["system", "call", "push path", "poll path"], _calls_rows(push, poll))}
"""
    if not triggers:
        return text
    return f"""{text}
The Zendesk simulator runs every active trigger on every ticket create and update, as Zendesk
does, and only the triggers made through its API: the stack's desk was provisioned from empty by
`deskgate setup`. Its trigger (tags include a trigger tag, tags include none of `idv_pending`
`idv_review`, status less than solved) against the tag-only one the set-up documented before
(an admin's edit through the API; `deskgate setup` repaired it afterwards),
without and with one requester reply while the ticket waits for the employee (the reply's own
PUT is left out; it reopens the ticket, so the outcome's Safe Update meets a 409 and reads the
ticket again under either trigger):

{
        table(
            [
                "trigger",
                "replies",
                "pushes",
                "`GET /tickets/{id}`",
                "`PUT /tickets/{id}`",
                "Zendesk calls",
            ],
            triggers,
        )
    }
"""


def _calls_rows(push: dict[str, Any], poll: dict[str, Any]) -> list[list[str]]:
    rows = []
    for system in push:
        routes = sorted(set(push[system]) | set(poll[system]))
        for route in routes:
            rows.append(
                [
                    system,
                    f"`{route}`",
                    f"{push[system].get(route, 0):.2f}",
                    f"{poll[system].get(route, 0):.2f}",
                ]
            )
        if system == "pushes":
            continue
        rows.append(
            [
                system,
                "**total**",
                f"**{sum(push[system].values()):.2f}**",
                f"**{sum(poll[system].values()):.2f}**",
            ]
        )
    return rows


def report(
    push: dict[str, Any],
    poll: dict[str, Any],
    levels: list[tuple[str, dict[str, float]]],
    memory_rows: list[list[str]],
    persistent: int,
    bulk: float,
    rss: tuple[float, float, float],
    interval: int,
    args: argparse.Namespace,
    ticketing: str,
) -> str:
    per_minute = 60 / interval
    finished = [m for name, m in levels if "open" not in name]
    flat = max(m["poll desk calls"] for m in finished) == min(
        m["poll desk calls"] for m in finished
    )
    level_rows = [
        [
            name,
            f"{m['poll desk calls']:.1f}",
            f"**{m['poll desk calls'] * per_minute:.1f}**",
            f"{m['poll_desk redis']:.0f}",
            f"{m['poll_desk ms']:.0f} ms",
            f"{m['sweep redis']:.0f}",
            f"{m['sweep ms']:.0f} ms",
        ]
        for name, m in levels
    ]
    ticket_total = sum(push[ticketing].values())
    return f"""### 4. Cost per verification

`python -m bench.cost` — {now_utc()}; {machine()}.
{args.lifecycles} verified lifecycles per path on the {args.kind} desk; counts are Deskgate's
calls as the simulators logged them (tokens included), per lifecycle.

{table(["system", "call", "push path", "poll path"], _calls_rows(push, poll))}

Target: ticketing calls per lifecycle at the minimum the APIs allow — measured
**{ticket_total:.0f}** on the push path; see "Calls per lifecycle" below for the minimum.

Poll and sweep cost as history grows (desk `poll_interval_seconds` = {interval}; {args.polls}
polls and sweeps per level; Redis commands from MONITOR):

{
        table(
            [
                "stored verifications",
                "desk calls/poll",
                "desk calls/desk/min",
                "Redis cmds/poll",
                "poll task",
                "Redis cmds/sweep",
                "sweep task",
            ],
            level_rows,
        )
    }

Target: poll cost flat in history — {met(flat)} (desk calls per poll the same at every level of
finished verifications; open ones are counted separately, see below).

Redis memory per verification (after {2 * args.lifecycles} finished lifecycles, MEMORY USAGE by
key family; the copies seeded for the history levels measured {bulk:.0f} B each by
`used_memory`):

{table(["key family", "keys", "bytes per verification", "TTL"], memory_rows)}

Keys of this run without a TTL: {persistent} (target: bounded by a retention policy —
{met(persistent <= 2)}; the two allowed are the `due` index and the poll cursor, which hold
open work only). Worker RSS: {rss[0]:.0f} MiB at start, {rss[1]:.0f} MiB at the end
(peak {rss[2]:.0f} MiB).
"""


if __name__ == "__main__":
    main()
