"""Redis loses the lifecycle store: the gated tickets still carry what is needed (their sealed
gate notes; docs/architecture.md, "The lifecycle"), so outcomes reach them anyway."""

from __future__ import annotations

import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from tests.e2e.test_lifecycle import WAIT, flagged_ticket, settle

pytestmark = pytest.mark.e2e


def wipe_store(stack: Stack) -> int:
    """Delete every key of Deskgate's lifecycle store (the broker's queue is left alone)."""
    keys = list(stack.redis.scan_iter(f"{stack.options.key_prefix}:*"))
    if keys:
        stack.redis.delete(*keys)
    return len(keys)


def test_given_the_store_is_lost_when_incode_reports_then_the_outcome_still_lands(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    ticket, session = flagged_ticket(stack, desk, employee)
    assert wipe_store(stack) > 0

    # Incode's webhook names a session Redis no longer knows: Deskgate polls, finds the gated
    # ticket, rebuilds the verification from its gate note and asks Incode for the result.
    stack.complete(session["interviewId"], "fail")
    wait_for(lambda: desk.view(ticket).marker == "failed", WAIT, "the failed marker")
    settle(stack)
    notes = desk.notes(ticket)
    assert len(notes) == 2 and "FAILED" in notes[1]
    assert session["interviewId"] in notes[1]
    assert len(stack.sessions(employee)) == 1  # no second link
    assert not desk.view(ticket).held
