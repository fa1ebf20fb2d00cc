"""What a verification keeps of its ticket between Deskgate's writes: a few bytes, never the
requester's record, and enough to rebuild the ticket a conditional write needs."""

from __future__ import annotations

from dataclasses import replace

from redis import Redis

from connectors.ticketing import Person, Ticket
from tests.conftest import TEST_CHAIN
from worker.lifecycle import State
from worker.lifecycle.store import Store, Verification

V = Verification(
    id="v1", desk="acme", ticket_id="42", ticket_display="#42", requester_id="7",
    reason="MFA reset", state=State.SENT, created_at=1.0, updated_at=1.0,
)  # fmt: skip
GATED = Ticket(
    id="42", display_id="#42", requester_id="7", reason="MFA reset", marker="pending",
    active=True, writable=True, status="hold", version="2026-11-26T08:00:00Z",
    requester=Person(id="7", email="ann@example.com", phone="+15550100"),
)  # fmt: skip


def test_a_ticket_comes_back_as_its_write_left_it_without_the_requesters_record() -> None:
    kept = V.remember(GATED)
    assert "ann@example.com" not in kept and "+15550100" not in kept
    assert replace(V, ticket=kept).recall() == replace(GATED, requester=None)


def test_a_requester_other_than_the_verifications_is_kept_and_so_is_none() -> None:
    for requester in ("8", None):
        changed = replace(GATED, requester_id=requester, requester=None)
        assert replace(V, ticket=V.remember(changed)).recall() == changed


def test_nothing_or_something_unreadable_recalls_nothing() -> None:
    for kept in ("", "not json", '{"id": "42"}', "[1, 2]"):
        assert replace(V, ticket=kept).recall() is None


def test_the_record_keeps_redis_compact_encoding(redis: Redis[str]) -> None:
    """One hash value over 64 bytes would store the whole record as a hash table."""
    store = Store(redis, "dgtest", 3600, chain=TEST_CHAIN)
    v, _ = store.open(
        desk="acme", ticket_id="42", ticket_display="#42", requester_id="7",
        reason="MFA reset", now=1.0, resume_at=2.0,
    )  # fmt: skip
    servicenow_like = replace(GATED, version="2026-11-26 08:00:00#12", status="3")
    store.update(v.id, gated=True, ticket=v.remember(servicenow_like))
    assert redis.object("encoding", f"dgtest:v:{v.id}") == "listpack"
