"""Scenario 5: a burst. 250 tickets on each desk, flagged at once (the desks push every one and
deliver one push in five twice, and the pollers run in the middle of it), then 500 employees
finish at once. Every ticket must be processed, and none twice: one link per employee, one gate
note and one outcome note, one gate write and one outcome write per ticket."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from tests.faults.conftest import Observe, People
from tests.faults.lifecycles import GATE_NOTE, quiet, session_of, start
from worker.dispatch import POLL_DESK, START_VERIFICATION

pytestmark = pytest.mark.faults

PER_DESK = 250
WAIT = 180.0
T = TypeVar("T")
R = TypeVar("R")


def at_once(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """What many agents and employees do in the same minute: 16 at a time."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(work, items))


def all_marked(desk: DeskDriver, tickets: list[str], marker: str) -> bool:
    markers = desk.all_markers()
    return all(markers.get(t) == marker for t in tickets)


def writes(stack: Stack, desk: DeskDriver, tickets: list[str]) -> Counter[str]:
    """Deskgate's successful writes per ticket (gate and outcome are one write each)."""
    method = "PUT" if desk.system == "zendesk" else "PATCH"
    wanted = set(tickets)
    return Counter(
        c["path"].rsplit("/", 1)[-1]
        for c in stack.call_log(desk.system)
        if c["method"] == method
        and c["status"] == 200
        and not desk.is_driver_call(f"{c['method']} {c['route']}")
        and c["path"].rsplit("/", 1)[-1] in wanted
    )


def test_given_500_tickets_flagged_at_once_then_each_is_processed_once(
    stack: Stack, people: People, observe: Observe
) -> None:
    desks = [stack.driver("zendesk"), stack.driver("servicenow")]
    employees = people(2 * PER_DESK)
    plan = [(desks[i % 2], email) for i, email in enumerate(employees)]

    def create(item: tuple[DeskDriver, str]) -> str:
        desk, email = item
        return desk.create_ticket(f"Employee {email.split('@')[0]}", email, "MFA reset")

    tickets = at_once(create, plan)
    mine = {d.system: [t for (desk, _), t in zip(plan, tickets, strict=True) if desk is d]
            for d in desks}  # fmt: skip

    flags = list(zip(plan, tickets, strict=True))
    began = time.monotonic()
    at_once(lambda pair: pair[0][0].flag(pair[1]), flags[: len(flags) // 2])
    for desk in desks:  # the safety net runs in the middle of the burst
        stack.send_task(POLL_DESK, desk.desk)
    at_once(lambda pair: pair[0][0].flag(pair[1]), flags[len(flags) // 2 :])
    for desk in desks:  # and the desks deliver one push in five twice
        start(stack, desk, mine[desk.system][::5])
    for desk in desks:
        wait_for(partial(all_marked, desk, mine[desk.system], "pending"), WAIT,
                 f"{PER_DESK} gates on {desk.system}", every=0.5)  # fmt: skip
    gated_in = time.monotonic() - began

    sessions = at_once(lambda pair: session_of(pair[0][0], pair[1]),
                       list(zip(plan, tickets, strict=True)))  # fmt: skip
    began = time.monotonic()
    at_once(lambda s: stack.complete(s, "pass"), sessions)
    for desk in desks:
        wait_for(partial(all_marked, desk, mine[desk.system], "verified"), WAIT,
                 f"{PER_DESK} outcomes on {desk.system}", every=0.5)  # fmt: skip
    verified_in = time.monotonic() - began
    quiet(stack, seconds=1.0)

    counts: dict[str, Any] = {}
    for desk in desks:
        notes = at_once(desk.notes, mine[desk.system])
        gates = Counter(sum(GATE_NOTE in n for n in ns) for ns in notes)
        outcomes = Counter(sum(GATE_NOTE not in n for n in ns) for ns in notes)
        per_ticket = Counter(writes(stack, desk, mine[desk.system]).values())
        assert gates == {1: PER_DESK}, f"{desk.system}: gate notes per ticket {gates}"
        assert outcomes == {1: PER_DESK}, f"{desk.system}: outcome notes per ticket {outcomes}"
        assert per_ticket == {2: PER_DESK}, f"{desk.system}: writes per ticket {per_ticket}"
        counts[desk.system] = {
            "tickets": len(notes),
            "verified": sum(m == "verified" for m in desk.all_markers().values()),
            "gate_notes": sum(n * k for n, k in gates.items()),
            "outcome_notes": sum(n * k for n, k in outcomes.items()),
            "writes": sum(n * k for n, k in per_ticket.items()),
        }
    links = Counter(s["loginHint"] for s in stack.sessions())
    assert len(links) == 2 * PER_DESK and set(links.values()) == {1}  # one link each, no more
    observe(
        **counts,
        links=sum(links.values()),
        start_tasks=stack.received(START_VERIFICATION),  # pushes, redeliveries, pollers' finds
        seconds_to_gate_all=round(gated_in, 1),
        seconds_to_verify_all=round(verified_in, 1),
    )
