"""Anyone who can write on a ticket tries to borrow another verification: Deskgate's marker, the
trigger and a note in the gate note's words, naming a session that passed elsewhere or a live
verification. Only Deskgate's own sealed gate note for the very ticket is ever adopted, and an
adoption never replaces a record Redis holds."""

from __future__ import annotations

import re

import pytest

from sandbox.driver import DeskDriver
from sandbox.stack import Stack, wait_for
from tests.e2e.test_lifecycle import WAIT, flagged_ticket, settle
from worker.dispatch import POLL_DESK

pytestmark = pytest.mark.e2e

UNRECOVERABLE = "this verification cannot be recovered"


def ids(note: str) -> tuple[str, str, str]:
    """(session, verification, requester) as a gate note names them."""
    found = re.search(
        r"Incode session: (\S+)\nDeskgate verification: (\S+) \(requester ([^)]*)\)", note
    )
    assert found is not None, note
    return found[1], found[2], found[3]


def requester_of(desk: DeskDriver, ticket: str) -> str:
    raw = desk.raw(ticket)  # type: ignore[attr-defined]
    record = raw.get("ticket") or raw["record"]
    return str(record.get("requester_id") or record.get("caller_id"))


def forged_gate(note: str, *, verification: str, requester: str) -> str:
    """A genuine gate note's words, with the ids an attacker wants recovered."""
    _, vid, who = ids(note)
    return note.replace(f"verification: {vid}", f"verification: {verification}").replace(
        f"(requester {who})", f"(requester {requester})"
    )


def tampered(
    stack: Stack, desk: DeskDriver, ticket: str, note: str, *, as_deskgate: bool = False
) -> None:
    """The note and marker go on; the rare scan of gated tickets (every 30 minutes, or at once
    when Incode names an unknown session) finds the ticket: the trigger stays silent on a ticket
    that carries Deskgate's marker."""
    desk.tamper(ticket, note, as_deskgate=as_deskgate)
    stack.send_task(POLL_DESK, desk.desk, True)


def ended_in_error(desk: DeskDriver, ticket: str) -> str:
    wait_for(lambda: desk.view(ticket).marker == "error", WAIT, "the error marker")
    notes = desk.notes(ticket)
    assert not any("VERIFIED" in n for n in notes), notes
    return notes[-1]


def test_a_note_naming_a_session_that_passed_elsewhere_verifies_no_one(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    # Ticket A: a real verification that passed.
    a, session = flagged_ticket(stack, desk, employee)
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(a).marker == "verified", WAIT, "A verified")
    gate_a = desk.notes(a)[0]

    # Ticket B: a victim who was never sent a link; the caller forges B's gate.
    victim = f"victim.{employee}"
    stack.enrol(victim)
    b = desk.create_ticket("Victim Employee", victim, "Reset my MFA please")
    forged = forged_gate(gate_a, verification="ab" * 12, requester=requester_of(desk, b))
    tampered(stack, desk, b, forged)

    note = ended_in_error(desk, b)
    assert UNRECOVERABLE in note
    assert stack.sessions(victim) == []  # and no link went to anyone for B
    settle(stack)
    assert desk.view(a).marker == "verified"  # A is untouched


def test_a_note_naming_a_live_verification_takes_nothing_over(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    c, session = flagged_ticket(stack, desk, employee)  # live: the employee has the link
    _, live_vid, _ = ids(desk.notes(c)[0])
    victim = f"victim2.{employee}"
    b = desk.create_ticket("Victim Employee", victim, "Unlock my account")
    forged = forged_gate(desk.notes(c)[0], verification=live_vid, requester=requester_of(desk, b))
    tampered(stack, desk, b, forged)
    assert UNRECOVERABLE in ended_in_error(desk, b)

    # C's verification is still C's: its result lands on C, not on B.
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(c).marker == "verified", WAIT, "C verified")
    settle(stack)
    assert desk.view(b).marker == "error"
    assert not any("VERIFIED" in n for n in desk.notes(b))


def test_a_copy_of_deskgates_own_gate_note_is_not_believed_on_another_ticket_or_twice(
    stack: Stack, desk: DeskDriver, employee: str
) -> None:
    """Zendesk lets an API caller name a comment's author, so a copy can even claim to be
    Deskgate's: the seal binds the note to its ticket, and a finished verification is never
    adopted again."""
    a, session = flagged_ticket(stack, desk, employee)
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(a).marker == "verified", WAIT, "A verified")
    gate_a = desk.notes(a)[0]

    b = desk.create_ticket("Victim Employee", f"victim3.{employee}", "Reset my MFA")
    tampered(stack, desk, b, gate_a, as_deskgate=True)  # the sealed note, word for word, on B
    assert UNRECOVERABLE in ended_in_error(desk, b)

    tampered(stack, desk, a, gate_a, as_deskgate=True)  # replayed on A after its outcome
    wait_for(lambda: desk.view(a).marker == "error", WAIT, "A's replay refused")
    assert sum("VERIFIED" in n for n in desk.notes(a)) == 1
    assert len(stack.sessions(employee)) == 1
