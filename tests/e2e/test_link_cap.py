"""The cap on verification links, end to end: re-flagging a ticket or flagging many tickets for
one employee sends at most the cap, and the next ticket gets a note saying why and when."""

from __future__ import annotations

from functools import partial

import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for

pytestmark = pytest.mark.e2e
WAIT = 20.0
CAP = 3  # the default per-ticket and per-requester cap, which the sandbox config keeps


def noted(desk: DeskDriver, ticket: str, count: int) -> bool:
    return len(desk.notes(ticket)) == count


def test_reflagging_past_the_cap_gets_a_note_instead_of_a_link(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    ticket = desk.create_ticket("Jane Employee", employee, "MFA reset, again")
    for n in range(1, CAP + 1):
        desk.flag(ticket)
        wait_for(partial(noted, desk, ticket, 2 * n - 1), WAIT, f"gate note {n}")
        session = stack.sessions(employee)[-1]
        stack.complete(session["interviewId"], "pass")
        wait_for(partial(noted, desk, ticket, 2 * n), WAIT, f"outcome note {n}")

    desk.flag(ticket)  # one more time within the hour
    wait_for(lambda: desk.view(ticket).marker == "error", WAIT, "the cap note")
    notes = desk.notes(ticket)
    assert len(notes) == 2 * CAP + 1
    assert f"the cap of {CAP} verification links for this " in notes[-1]
    assert "in 1 hour is reached; flag the ticket again after " in notes[-1]
    assert len(stack.sessions(employee)) == CAP  # Incode was not asked a fourth time
    view = desk.view(ticket)
    assert not view.held and not view.flagged


def test_a_burst_of_tickets_for_one_employee_sends_at_most_the_cap(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    tickets = [desk.create_ticket("Jane Employee", employee, "locked out") for _ in range(CAP + 2)]
    for ticket in tickets:  # a loop between two automations, say
        desk.flag(ticket)

    def settled() -> list[str | None] | None:
        markers = [desk.view(t).marker for t in tickets]
        return markers if all(m in ("pending", "error") for m in markers) else None

    markers = wait_for(settled, WAIT, "every ticket gated or refused")
    assert markers.count("pending") == CAP and markers.count("error") == 2
    assert len(stack.sessions(employee)) == CAP
    for ticket, marker in zip(tickets, markers, strict=True):
        if marker == "error":
            assert "verification links for this requester" in desk.notes(ticket)[-1]
