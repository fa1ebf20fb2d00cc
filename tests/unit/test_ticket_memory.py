"""What the worker keeps of a ticket between its writes: everything but the requester's record."""

from __future__ import annotations

from connectors.ticketing import Person, Ticket


def test_a_ticket_comes_back_as_remembered_without_its_requester() -> None:
    ticket = Ticket(
        id="42", display_id="#42", requester_id="7", reason="MFA reset", marker="pending",
        active=True, writable=True, status="hold", version="2026-11-26T08:00:00Z",
        requester=Person(id="7", email="ann@example.com", phone="+15550100"),
    )  # fmt: skip
    remembered = ticket.remember()
    assert "ann@example.com" not in remembered and "+15550100" not in remembered
    assert Ticket.recall(remembered) == Ticket(**{**ticket.__dict__, "requester": None})


def test_nothing_or_something_unreadable_recalls_nothing() -> None:
    assert Ticket.recall("") is None
    assert Ticket.recall("not json") is None
    assert Ticket.recall('["a list"]') is None
    assert Ticket.recall('{"id": "42"}') is None  # fields missing: read the ticket instead
