"""Tickets that cannot lie, on both desks: an agent lifts a held ticket's gate before the result
(recorded with who did it, from the desk's own history), and a verified marker set by hand is
overturned to error by the marker audit."""

from __future__ import annotations

import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from tests.e2e.test_lifecycle import WAIT, flagged_ticket
from worker.dispatch import AUDIT_MARKERS

pytestmark = pytest.mark.e2e


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


def test_deskgates_own_verified_marker_survives_the_marker_audit(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    ticket, session = flagged_ticket(stack, desk, employee)
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the verified marker")
    cursor = f"{stack.options.key_prefix}:cursor:{desk.desk}:marked"
    before = stack.redis.get(cursor)
    stack.send_task(AUDIT_MARKERS, desk.desk)
    # The scan has read the ticket once its cursor moved past the ticket's last change.
    wait_for(lambda: stack.redis.get(cursor) not in (None, before), WAIT, "the marker audit")
    assert desk.view(ticket).marker == "verified"
    assert audit_events(stack, "ticket.marker_overturned", desk.view(ticket).display) == []
