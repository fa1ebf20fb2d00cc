"""Scenario 1: the worker is killed with SIGKILL in the middle of its tasks, and restarted.

Every kill point is in flight at once, so one kill covers them all:

- A: Incode's request-new, before it takes effect (the request stalls, then fails);
- B: Incode's request-new after it took effect, its answer never heard (the crash window);
- C: the gate write, before it takes effect;          D: the gate write, after it took effect;
- E: the outcome write, before it takes effect;       F: the outcome write, after it took effect.

Nothing is lost: the sweep resumes every step once the dead worker's locks run out. The one
unavoidable duplicate is B's second link (Incode offers no idempotency key): allowed, counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

import pytest
from redis import Redis

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, StackOptions, wait_for, wait_until
from tests.faults.conftest import FAULTS_REDIS_URL, KEY_PREFIX, QUEUE, Observe, People
from tests.faults.lifecycles import Case, check, open_flagged, session_of, start, wait_markers
from worker.dispatch import SWEEP

pytestmark = pytest.mark.faults

TIME_LIMIT = 10  # the stack's task time limit: a dead worker's locks run out 40 s after taken
STALL = 90.0  # longer than the whole kill sequence
REQUEST_NEW = "/omni/b2b/onboarding/request-new"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    Redis.from_url(FAULTS_REDIS_URL).flushdb()
    options = StackOptions(
        redis_url=FAULTS_REDIS_URL,
        key_prefix=KEY_PREFIX,
        queue=QUEUE,
        worker_concurrency=16,
        task_time_limit_seconds=TIME_LIMIT,
    )
    with Stack(options, workdir=tmp_path_factory.mktemp("killed")) as running:
        yield running


def write_path(desk: DeskDriver, ticket: str) -> tuple[str, str]:
    """(method, path) of Deskgate's writes to this ticket."""
    if desk.system == "zendesk":
        assert int(ticket) < 10, "path prefixes would also match longer ticket ids"
        return "PUT", f"/api/v2/tickets/{ticket}"
    return "PATCH", f"/api/now/table/incident/{ticket}"


def stall(stack: Stack, desk: DeskDriver, ticket: str, *, took_effect: bool) -> None:
    """Hold Deskgate's next write to the ticket: before it takes effect (then fail it), or
    after (its answer held)."""
    method, path = write_path(desk, ticket)
    if took_effect:
        stack.fault(desk.system, path, method=method, status=0, stage="after", delay=STALL)
    else:
        stack.fault(desk.system, path, method=method, status=503, delay=STALL)


def taken(stack: Stack, system: str) -> bool:
    return not stack.pending_faults(system)


def test_given_sigkill_mid_task_when_restarted_then_nothing_is_lost(
    stack: Stack, people: People, observe: Observe
) -> None:
    zendesk, servicenow = stack.driver("zendesk"), stack.driver("servicenow")
    desks = (zendesk, servicenow)
    # E, F: gated normally first; their outcome writes will be caught mid-flight.
    late: dict[str, list[tuple[str, str]]] = {}
    for desk in desks:
        employees = people(2)
        tickets = open_flagged(desk, employees)
        wait_markers(desk, tickets, "pending", 30)
        late[desk.system] = list(zip(tickets, employees, strict=True))
    # A, B (one per desk) and C, D (two per desk): flagged, nothing announced yet.
    early: dict[str, list[tuple[str, str]]] = {}
    for desk in desks:
        employees = people(3)
        early[desk.system] = list(
            zip(open_flagged(desk, employees, announce=False), employees, strict=True)
        )

    # A: request-new stalls, then fails; B: it takes effect, its answer is held.
    (a_ticket, a_who), (b_ticket, b_who) = early["zendesk"][0], early["servicenow"][0]
    stack.fault("incode", REQUEST_NEW, method="POST", status=503, delay=STALL)
    start(stack, zendesk, [a_ticket])
    wait_for(lambda: taken(stack, "incode"), 30, "A's request-new in flight")
    stack.fault("incode", REQUEST_NEW, method="POST", status=0, stage="after", delay=STALL)
    start(stack, servicenow, [b_ticket])
    wait_for(lambda: taken(stack, "incode"), 30, "B's request-new in flight")
    wait_for(lambda: len(stack.sessions(b_who)) == 1, 30, "B's session created at Incode")
    # C, D: the gate writes.
    for desk in desks:
        (c_ticket, _), (d_ticket, _) = early[desk.system][1:]
        stall(stack, desk, c_ticket, took_effect=False)
        stall(stack, desk, d_ticket, took_effect=True)
        start(stack, desk, [c_ticket, d_ticket])
    # E, F: the outcome writes, once the employees pass.
    for desk in desks:
        (e_ticket, _), (f_ticket, _) = late[desk.system]
        stall(stack, desk, e_ticket, took_effect=False)
        stall(stack, desk, f_ticket, took_effect=True)
        for ticket in (e_ticket, f_ticket):
            stack.complete(session_of(desk, ticket), "pass")
    for desk in desks:
        wait_for(partial(taken, stack, desk.system), 30, f"every {desk.system} write in flight")
    assert [zendesk.view(t).marker for t, _ in early["zendesk"]] == [None, None, "pending"]

    stack.kill_worker()
    killed_at = time.monotonic()
    stack.clear_faults()  # the stalled requests finish on their own, to nobody
    stack.start_worker()

    # The sweep resumes every step once the dead worker's locks run out (time limit + 30 s).
    # Each round evaluates it a lease (60 s) later than the last, so no hand-out waits for one.
    def resumed() -> bool:
        return all(
            desk.view(ticket).marker == ("pending" if n < 3 else "verified")
            for desk in desks
            for n, (ticket, _) in enumerate(early[desk.system] + late[desk.system])
        )

    for round_ in range(30):
        stack.send_task(SWEEP, time.time() + 75 + 60 * round_)
        if wait_until(resumed, 5, every=0.5):
            break
    assert resumed(), "not every step was resumed"
    recovered_in = time.monotonic() - killed_at

    # The employees of A to D open their (latest) links and pass.
    for desk in desks:
        for ticket, _ in early[desk.system]:
            stack.complete(session_of(desk, ticket), "pass")
    cases = [
        Case(desk, ticket, who, links=2 if ticket == b_ticket else 1)
        for desk in desks
        for ticket, who in early[desk.system] + late[desk.system]
    ]
    tally = check(stack, cases)
    assert len(stack.sessions(b_who)) == 2  # the documented duplicate: B's answer was lost
    assert len(stack.sessions(a_who)) == 1  # A's first request never took effect
    observe(
        **tally.counts(),
        kill_points=6,
        recovered_seconds=round(recovered_in, 1),
        extra_links=tally.links - len(cases),
    )
