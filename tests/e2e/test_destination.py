"""The link goes to the employee's contact of record, and not to one that was just put there:
an agent who changes the requester's e-mail "on the caller's word" and flags the ticket sends
no link; the ticket says why and when it may be tried again."""

from __future__ import annotations

import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from tests.e2e.test_lifecycle import WAIT, settle

pytestmark = pytest.mark.e2e


def test_a_contact_changed_just_now_gets_no_link(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    caller = f"caller.{employee}"  # the attacker's own mailbox
    stack.enrol(caller)
    ticket = desk.create_ticket("Jane Employee", employee, "I lost my phone, reset my MFA")
    desk.change_contact(ticket, caller)
    desk.flag(ticket)

    wait_for(lambda: desk.view(ticket).marker == "error", WAIT, "the error note")
    settle(stack)
    [note] = desk.notes(ticket)
    what = "e-mail address (which names the employee to Incode and receives the link)"
    assert f"{what} was added or changed at" in note
    assert "less than 72 hours ago" in note and "flag the ticket again after" in note
    assert caller not in note and employee not in note
    assert stack.sessions(caller) == [] and stack.sessions(employee) == []
    assert not desk.view(ticket).held
