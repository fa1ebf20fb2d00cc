"""Scenario 3: the ticketing API misbehaves. Bursts of 429 with Retry-After, 500/503, timeouts
(a read that never answers, a write that lands but whose answer is lost) and 409s from agents
editing the ticket while Deskgate writes. Every ticket must end correct, no agent's edit may be
overwritten, and after a 429 Deskgate must leave the desk alone for the Retry-After it was given
(measured from the simulator's call log)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from tests.faults.conftest import Observe, People
from tests.faults.lifecycles import (
    WAIT,
    Case,
    check,
    inside_retry_after,
    open_flagged,
    retries,
    session_of,
    start,
    wait_markers,
)
from worker.dispatch import POLL_DESK

pytestmark = pytest.mark.faults

RETRY_AFTER = 1  # seconds, on every injected 429
IN_FLIGHT = 0.1  # a call arriving this soon after a 429's answer was sent before it was heard
TIMEOUT_STALL = 6.0  # Deskgate's HTTP timeout in the stack is 5 s


@dataclass(frozen=True)
class Api:
    """Where Deskgate's own calls go on a desk (the driver uses other routes)."""

    prefix: str
    write: str  # the method of the gate and outcome writes
    record: str  # a ticket's path, less its id

    def of(self, ticket: str) -> str:
        return self.record + ticket


APIS = {
    "zendesk": Api("/api/v2/", "PUT", "/api/v2/tickets/"),
    "servicenow": Api("/api/now/table/", "PATCH", "/api/now/table/incident/"),
}


def deskgate_calls(stack: Stack, desk: DeskDriver, since: float) -> list[dict[str, Any]]:
    return [
        c
        for c in stack.call_log(desk.system)
        if c["at"] >= since and not desk.is_driver_call(f"{c['method']} {c['route']}")
    ]


def served(calls: list[dict[str, Any]], *statuses: int) -> int:
    return sum(1 for c in calls if c["status"] in statuses)


def rate_limited(stack: Stack, desk: DeskDriver, people: People) -> dict[str, Any]:
    """Four tickets at once meet bursts of 429s, while gating and while writing outcomes."""
    api = APIS[desk.system]
    employees = people(4)
    tickets = open_flagged(desk, employees, announce=False)
    since = time.time()
    stack.fault(desk.system, api.prefix, status=429, retry_after=RETRY_AFTER, count=4)
    start(stack, desk, tickets)
    wait_markers(desk, tickets, "pending", WAIT)
    stack.fault(desk.system, api.prefix, status=429, retry_after=RETRY_AFTER, count=3)
    for ticket in tickets:
        stack.complete(session_of(desk, ticket), "pass")
    tally = check(stack, [Case(desk, t, e) for t, e in zip(tickets, employees, strict=True)])

    calls = deskgate_calls(stack, desk, since)
    limited, early = inside_retry_after(calls, RETRY_AFTER, IN_FLIGHT)
    assert limited == 7  # every injected 429 was met, and the scenario still ended well
    assert early == [], f"calls within Retry-After={RETRY_AFTER}s of a 429: {early}"
    waits = [
        min(c["started"] - limit["at"] for c in calls if c["started"] > limit["at"] + IN_FLIGHT)
        for limit in calls
        if limit["status"] == 429
    ]
    return {
        **tally.counts(),
        "429s": limited,
        "calls_inside_retry_after": len(early),
        "shortest_wait_after_429": round(min(waits), 2),
    }


def errors_and_timeouts(stack: Stack, desk: DeskDriver, people: People) -> dict[str, Any]:
    """Five tickets, found by the poller, meet 500s, 503s, injected 409s, a read that times out
    and a write that lands but whose answer is lost (twice: a gate and an outcome)."""
    api = APIS[desk.system]
    employees = people(5)
    tickets = open_flagged(desk, employees, announce=False)
    since, retried = time.time(), len(stack.logged("worker", "will retry"))
    # The poll's search meets the first; the tickets' reads the next two.
    stack.fault(desk.system, api.prefix, status=503, method="GET")
    stack.fault(desk.system, api.record, status=500, method="GET")
    stack.fault(desk.system, api.record, status=0, delay=TIMEOUT_STALL, method="GET")
    for status, count in ((500, 1), (503, 1), (409, 2)):
        stack.fault(desk.system, api.prefix, status=status, count=count, method=api.write)
    stack.fault(
        desk.system, api.prefix, status=0, delay=TIMEOUT_STALL, stage="after", method=api.write
    )
    stack.send_task(POLL_DESK, desk.desk)
    wait_markers(desk, tickets, "pending", WAIT)

    stack.fault(desk.system, api.prefix, status=503, method="GET")
    for status in (500, 409):
        stack.fault(desk.system, api.prefix, status=status, method=api.write)
    stack.fault(
        desk.system, api.prefix, status=0, delay=TIMEOUT_STALL, stage="after", method=api.write
    )
    outcomes = ["pass", "fail", "pass", "pass", "fail"]
    for ticket, outcome in zip(tickets, outcomes, strict=True):
        stack.complete(session_of(desk, ticket), outcome)
    finals = {"pass": "verified", "fail": "failed"}
    cases = [
        Case(desk, t, e, finals[o]) for t, e, o in zip(tickets, employees, outcomes, strict=True)
    ]
    tally = check(stack, cases)

    assert stack.pending_faults(desk.system) == []  # every fault was met
    calls = deskgate_calls(stack, desk, since)
    worker = retries(stack, retried)
    assert worker.get("timeout") == 3  # the read, and the two writes whose answers were lost
    return {
        **tally.counts(),
        "5xx": served(calls, 500, 503),
        "409s": served(calls, 409),
        "retries": worker,
    }


def agent_edits_meanwhile(stack: Stack, desk: DeskDriver, people: People) -> dict[str, Any]:
    """An agent retitles the ticket while Deskgate's gate write is in flight, solves it while it
    waits for the employee, and retitles it again while the outcome is being written. Zendesk
    answers Deskgate's stale writes with 409; ServiceNow has no such check, so Deskgate's writes
    must not touch what the agent changed."""
    api = APIS[desk.system]
    [employee] = people(1)
    [ticket] = open_flagged(desk, [employee], announce=False)
    since = time.time()

    def while_writing(edit: str) -> None:
        wait_for(lambda: not stack.pending_faults(desk.system), WAIT, "Deskgate's write")
        desk.edit(ticket, subject=edit)  # lands while Deskgate's write is held

    stack.fault(desk.system, api.of(ticket), status=0, delay=1.5, method=api.write)
    start(stack, desk, [ticket])
    while_writing("MFA reset (caller on the phone)")
    wait_markers(desk, [ticket], "pending", WAIT)
    desk.edit(ticket, status="solved")

    stack.fault(desk.system, api.of(ticket), status=0, delay=1.5, method=api.write)
    stack.complete(session_of(desk, ticket), "pass")
    while_writing("MFA reset (done by phone)")
    tally = check(stack, [Case(desk, ticket, employee)])

    view = desk.view(ticket)
    assert view.subject == "MFA reset (done by phone)"  # the agent's last edit stands
    assert view.status == desk.statuses["solved"]  # not released back to "open" by Deskgate
    conflicts = served(deskgate_calls(stack, desk, since), 409)
    assert conflicts == (2 if desk.system == "zendesk" else 0)
    return {**tally.counts(), "409s": conflicts}


def test_given_ticketing_api_faults_then_every_ticket_ends_correct_and_edits_stand(
    stack: Stack, desk: DeskDriver, people: People, observe: Observe
) -> None:
    for phase in (rate_limited, errors_and_timeouts, agent_edits_meanwhile):
        began = time.monotonic()
        counts = phase(stack, desk, people)
        observe(**{phase.__name__: {**counts, "seconds": round(time.monotonic() - began, 1)}})
