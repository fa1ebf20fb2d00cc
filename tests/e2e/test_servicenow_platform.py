"""ServiceNow as a real instance has it, end to end on the simulator: the Table API takes a
write without any condition, so a caller changed between Deskgate's re-read and its outcome write
shows only in what that write returns."""

from __future__ import annotations

import pytest

from sandbox.servicenow_driver import ServiceNowDriver
from sandbox.stack import Stack, wait_for

pytestmark = pytest.mark.e2e
WAIT = 20.0


def servicenow(stack: Stack) -> ServiceNowDriver:
    desk = stack.driver("servicenow")
    assert isinstance(desk, ServiceNowDriver)
    desk.set_push(True)
    return desk


def test_a_caller_changed_just_before_the_outcome_write_is_overturned_at_once(
    stack: Stack, employee: str
) -> None:
    desk = servicenow(stack)
    ticket = desk.create_ticket("Rita Race", employee, "Reset my MFA")
    desk.flag(ticket)
    wait_for(lambda: desk.notes(ticket), WAIT, "the gate note")
    [session] = stack.sessions(employee)
    # Lands after Deskgate's re-read, just before its outcome PATCH.
    desk.change_requester_before_next_write(ticket, "Someone Else", "someone.else@acme.test")
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "error", WAIT, "the error marker")
    _gate, verified, overturned = desk.notes(ticket)
    assert "Identity VERIFIED" in verified  # written for a record whose caller had just changed
    assert "requester changed" in overturned and "not applied" in overturned
