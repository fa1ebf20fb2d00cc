"""Tickets that cannot lie, on both desks: an agent lifts a held ticket's gate before the result
(recorded with who did it, from the desk's own history), and a verified marker set by hand is
overturned to error by the marker audit."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from redis import Redis

from sandbox.driver import DeskDriver
from sandbox.options import StackOptions
from sandbox.registry import DESKS
from sandbox.retention import keys_without_ttl
from sandbox.servicenow_driver import DESK as SERVICENOW
from sandbox.stack import Stack, wait_for
from sandbox.zendesk_driver import DESK as ZENDESK
from tests.e2e.conftest import E2E_REDIS_URL
from tests.e2e.test_lifecycle import WAIT, flagged_ticket
from worker.dispatch import AUDIT_MARKERS, SWEEP

pytestmark = pytest.mark.e2e
DESK_NAMES = (ZENDESK, SERVICENOW)  # the desks' names in the stack's configuration


def audit_events(stack: Stack, kind: str, ticket_display: str) -> list[dict[str, str]]:
    entries = stack.redis.xrange(f"{stack.options.key_prefix}:audit")
    return [e for _, e in entries if e["event"] == kind and e["ticket"] == ticket_display]


@pytest.mark.parametrize("marker", [False, True], ids=["hold", "marker"])
def test_a_gate_lifted_by_an_agent_is_named_in_the_outcome_and_the_audit(
    stack: Stack, desk: DeskDriver, employee: str, marker: bool
) -> None:
    ticket, session = flagged_ticket(stack, desk, employee)
    who = desk.lift_gate(ticket, marker=marker)
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: len(desk.notes(ticket)) == 2, WAIT, "the outcome note")
    outcome = desk.notes(ticket)[-1]
    assert "Identity VERIFIED" in outcome
    assert f"lifted (or the pending marker removed) before the result, by {who}" in outcome
    display = desk.view(ticket).display
    [lifted] = audit_events(stack, "ticket.gate_lifted", display)
    code = "marker_removed" if marker else "hold_lifted"
    assert (lifted["code"], lifted["actor"]) == (code, who)
    assert "@" not in lifted["actor"]


def test_a_verified_marker_set_by_hand_is_overturned_by_the_marker_audit(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    ticket = desk.create_ticket("Jane Employee", employee, "Please reset my MFA")
    desk.set_marker(ticket, "verified")
    stack.send_task(AUDIT_MARKERS, desk.desk)
    wait_for(lambda: desk.view(ticket).marker == "error", WAIT, "the marker overturned")
    [note] = desk.notes(ticket)
    assert "OVERTURNED" in note and "set the marker by hand" in note
    [event] = audit_events(stack, "ticket.marker_overturned", desk.view(ticket).display)
    assert event["code"] == "marker_forged"


@pytest.mark.parametrize("kept", [True, False], ids=["record", "sealed-note"])
def test_deskgates_own_verified_marker_survives_the_marker_audit(
    stack: Stack, desk: DeskDriver, employee: str, kept: bool
) -> None:
    """Proven by Deskgate's record, or, once the record has expired, by its sealed outcome note
    as the desk serves it back."""
    ticket, session = flagged_ticket(stack, desk, employee)
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the verified marker")
    if not kept:  # retention went by: the record and its index are gone
        prefix = stack.options.key_prefix
        [vid] = {e["verification"] for _, e in stack.redis.xrange(f"{prefix}:audit")
                 if e["ticket"] == desk.view(ticket).display}  # fmt: skip
        stack.redis.delete(f"{prefix}:v:{vid}", f"{prefix}:marked:{desk.desk}:{ticket}")
    cursor = f"{stack.options.key_prefix}:cursor:{desk.desk}:marked"
    stack.redis.delete(cursor)  # a scan from the start, which sets the cursor when it is done
    stack.send_task(AUDIT_MARKERS, desk.desk)
    wait_for(lambda: stack.redis.get(cursor) is not None, WAIT, "the marker audit")
    assert desk.view(ticket).marker == "verified"
    assert audit_events(stack, "ticket.marker_overturned", desk.view(ticket).display) == []


@pytest.fixture(scope="module")
def restoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own whose desks enforce the gate (``gate_enforcement = "restore"``)."""
    run = f"rst{os.getpid()}"
    env = {f"DESKGATE_DESKS__{desk.upper()}__GATE_ENFORCEMENT": "restore" for desk in DESK_NAMES}
    options = StackOptions(
        redis_url=E2E_REDIS_URL, key_prefix=run, queue=f"deskgate-{run}", worker_concurrency=4,
        extra_env=env,
    )  # fmt: skip
    with Stack(options, workdir=tmp_path_factory.mktemp("restoring")) as running:
        yield running
    redis: Redis[str] = Redis.from_url(E2E_REDIS_URL, decode_responses=True)
    try:
        assert not keys_without_ttl(redis, run)
    finally:
        redis.delete(*redis.scan_iter(f"{run}:*"), options.queue)
        redis.close()


@pytest.mark.parametrize("kind", DESKS)
def test_with_restore_the_sweeps_next_look_puts_a_lifted_hold_back_until_the_result(
    restoring: Stack, kind: str
) -> None:
    desk = restoring.driver(kind)
    employee = f"restored.{kind}@acme.test"
    restoring.enrol(employee)
    ticket, session = flagged_ticket(restoring, desk, employee)
    who = desk.lift_gate(ticket)
    assert not desk.view(ticket).held
    # The sweep's next look (reconciliation is due reconcile_after_seconds after the gate).
    restoring.send_task(SWEEP, time.time() + restoring.options.reconcile_after_seconds + 1)
    wait_for(lambda: desk.view(ticket).held, WAIT, "the hold put back")
    restored = desk.notes(ticket)[-1]
    assert f"lifted before the result, by {who}; Deskgate put it back" in restored
    assert desk.view(ticket).marker == "pending"
    restoring.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the verified marker")
    assert not desk.view(ticket).held  # the result releases the hold Deskgate put back
    assert f"before the result, by {who}" in desk.notes(ticket)[-1]


def test_a_requester_changed_after_a_verified_outcome_is_overturned_by_the_marker_audit(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    ticket, session = flagged_ticket(stack, desk, employee)
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the verified marker")
    desk.change_requester(ticket, "Mallory Caller", f"mallory.{ticket}@evil.test")
    stack.send_task(AUDIT_MARKERS, desk.desk)
    wait_for(lambda: desk.view(ticket).marker == "error", WAIT, "the marker overturned")
    assert "requester changed after Deskgate wrote its verified outcome" in desk.notes(ticket)[-1]
    [event] = audit_events(stack, "ticket.marker_overturned", desk.view(ticket).display)
    assert event["code"] == "requester_changed_after" and "@" not in event["requester"]
