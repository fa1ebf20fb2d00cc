"""The lifecycle store against a real Redis: one open verification per ticket, transitions that
happen once, the due index, locks and retention."""

from __future__ import annotations

import pytest
from redis import Redis

from tests.conftest import TEST_CHAIN
from worker.lifecycle import FINAL, OPEN, TRANSITIONS, State, sources
from worker.lifecycle.store import SessionTaken, Store, Verification

RETENTION = 3600


@pytest.fixture
def store(redis: Redis[str]) -> Store:
    return Store(redis, "dgtest", RETENTION, chain=TEST_CHAIN)


def open_one(store: Store, ticket: str = "42", now: float = 1000.0) -> tuple[Verification, bool]:
    return store.open(
        desk="acme",
        ticket_id=ticket,
        ticket_display=f"#{ticket}",
        requester_id="7",
        reason="MFA reset",
        now=now,
        resume_at=now + 180,
    )


def test_the_transition_table_matches_the_design() -> None:
    assert sources(State.SENT) == {State.REQUESTED}
    assert sources(State.VERIFIED) == {State.SENT, State.REVIEW}
    assert sources(State.EXPIRED) == {State.SENT, State.REVIEW}  # review: its timeout
    assert set(State) == OPEN | FINAL and not OPEN & FINAL
    assert not any(TRANSITIONS.get(s) for s in FINAL)  # nothing leaves a final state


def test_given_an_open_verification_when_opening_again_then_the_same_one(store: Store) -> None:
    first, created = open_one(store)
    again, created_again = open_one(store)
    assert created and not created_again
    assert again.id == first.id
    assert store.open_for("acme", "42") == first
    assert store.due(1180.0) == [first.id]
    assert store.due(1179.0) == []


def test_transitions_happen_once_and_only_along_the_table(store: Store) -> None:
    v, _ = open_one(store)
    # requested -> verified is not allowed: the record is returned as it stands
    assert store.advance(v, State.VERIFIED, 1001).state == State.REQUESTED
    sent = store.advance(v, State.SENT, 1001, interview_id="iv1", index_interview=True, due=1300)
    assert sent == store.get(v.id)  # the new record, as stored
    again = store.advance(v, State.SENT, 1002, interview_id="iv1")  # second delivery: no-op
    assert again == sent and sent.state == State.SENT and sent.updated_at == 1001
    assert store.session("iv1") == sent.id  # the session index
    assert store.due(1300) == [v.id]


def test_a_final_state_keeps_the_ticket_until_released_and_starts_retention(
    store: Store, redis: Redis[str]
) -> None:
    v, _ = open_one(store)
    store.advance(v, State.SENT, 1001, interview_id="iv1", index_interview=True)
    assert store.advance(v, State.FAILED, 1002, detail="liveness: FAIL", due=1200).state == "failed"
    failed = store.get(v.id)
    assert failed is not None and failed.detail == "liveness: FAIL" and failed.unwritten
    # Its outcome is not on the ticket yet: it still owns the ticket, so no second one starts.
    assert store.open_for("acme", "42") == failed
    assert not open_one(store, now=1500)[1]
    for key in (f"dgtest:v:{v.id}", "dgtest:iv:iv1", "dgtest:open:acme:42"):
        assert 0 < redis.ttl(key) <= RETENTION
    assert store.advance(failed, State.VERIFIED, 1003) == failed  # failed is final
    store.release(failed)  # the outcome is written: the ticket may get a new verification
    assert store.open_for("acme", "42") is None
    assert open_one(store, now=2000)[1]


def test_release_lets_go_only_of_the_verifications_own_hold(store: Store) -> None:
    old, _ = open_one(store)
    store.release(old)
    new, created = open_one(store, now=2000)
    assert created
    store.release(old)  # a late release by the old one
    assert store.open_for("acme", "42") == new


def test_a_session_mapped_to_another_verification_is_refused_in_the_same_step(
    store: Store,
) -> None:
    """Incode handing out an interviewId a second time: the second verification never takes
    it, and nothing of it changes (still requested, the session still the first one's)."""
    first, _ = open_one(store, ticket="1")
    second, _ = open_one(store, ticket="2")
    store.advance(first, State.SENT, 1001, interview_id="iv-same", index_interview=True)
    with pytest.raises(SessionTaken):
        store.advance(second, State.SENT, 1002, interview_id="iv-same", index_interview=True)
    assert store.session("iv-same") == first.id
    unchanged = store.get(second.id)
    assert unchanged is not None and unchanged.state == State.REQUESTED
    assert unchanged.interview_id == ""


def test_the_asking_mark_belongs_to_the_ticket_and_expires(store: Store, redis: Redis[str]) -> None:
    store.mark_asking("acme", "42", 1000.5, 35.0)
    assert store.asking_since("acme", "42") == 1000.5
    assert store.asking_since("acme", "43") == 0.0
    assert 0 < redis.ttl("dgtest:asking:acme:42") <= 35
    store.clear_asking("acme", "42")
    assert store.asking_since("acme", "42") == 0.0


def test_review_then_final(store: Store) -> None:
    v, _ = open_one(store)
    store.advance(v, State.SENT, 1001, interview_id="iv2", index_interview=True)
    review = store.advance(v, State.REVIEW, 1002)
    assert review.state == State.REVIEW
    assert store.open_for("acme", "42") is not None  # review is still open
    assert store.advance(review, State.ERROR, 1003).state == State.REVIEW
    assert store.advance(review, State.VERIFIED, 1004).state == State.VERIFIED


def test_an_unwritten_result_can_be_overturned_to_error_only_from_its_state(store: Store) -> None:
    v, _ = open_one(store)
    store.advance(v, State.SENT, 1001, interview_id="iv3", index_interview=True)
    verified = store.advance(v, State.VERIFIED, 1002)
    assert verified.state == State.VERIFIED
    # the lifecycle alone does not allow it
    assert store.advance(verified, State.ERROR, 1003).state == State.VERIFIED
    # v is stale: it says "sent"
    assert store.advance(v, State.ERROR, 1003, overturn=True).state == State.VERIFIED
    got = store.advance(verified, State.ERROR, 1003, overturn=True, detail="requester changed")
    assert got.state == State.ERROR and got.detail == "requester changed"


def test_written_and_gated_flags(store: Store) -> None:
    v, _ = open_one(store)
    store.update(v.id, gated=True, written="error")
    got = store.get(v.id)
    assert got is not None and got.gated and got.written == "error"
    store.update(v.id, gated=False)
    got = store.get(v.id)
    assert got is not None and not got.gated


def test_lock_is_exclusive_and_released(store: Store) -> None:
    with store.lock("v1", 30) as held:
        assert held
        with store.lock("v1", 30) as second:
            assert not second
    with store.lock("v1", 30) as after:
        assert after


def test_session_finds_the_verification_and_takes_no_dedupe_key(
    store: Store, redis: Redis[str]
) -> None:
    assert store.session("iv1") is None
    v, _ = open_one(store)
    store.advance(v, State.SENT, 1001, interview_id="iv1", index_interview=True)
    assert store.session("iv1") == v.id
    assert store.session("iv1") == v.id  # a read: asking twice is no "duplicate"
    # Taking a delivery is the enqueue's job (RedisDispatcher.send_once), not the lookup's.
    assert redis.keys("dgtest:seen:*") == []
    assert store.seen_key("incode", "iv1:SESSION_FAILED") == "dgtest:seen:incode:iv1:SESSION_FAILED"
    # An index that outlived its record is an unknown session.
    redis.delete(f"dgtest:v:{v.id}")
    assert store.session("iv1") is None


def test_a_gate_note_can_be_read_back_only_with_its_seal(store: Store) -> None:
    """What the recovery after a Redis loss relies on: the gate note names everything needed,
    and only a note sealed with Deskgate's secret for this very ticket is believed."""
    from worker.lifecycle import notes

    seal = notes.Seal(["note-sealing-secret"])
    v, _ = open_one(store)
    store.advance(v, State.SENT, 1001, interview_id="0123abcd", expires_at=1_795_672_800.0)
    sent = store.get(v.id)
    assert sent is not None
    text = notes.gate(sent, seal)
    record = notes.read_gate(text, seal, "acme", "42")
    assert record == notes.GateRecord(v.id, "0123abcd", "7", 1_795_672_800.0, "MFA reset")
    assert notes.read_gate(notes.outcome(sent, seal), seal, "acme", "42") is None
    claim = "Identity verification requested, says someone"
    assert notes.read_gate(claim, seal, "acme", "42") is None
    # The same note on another ticket or desk, or under another key, is not believed.
    assert notes.read_gate(text, seal, "acme", "43") is None
    assert notes.read_gate(text, seal, "other", "42") is None
    assert notes.read_gate(text, notes.Seal(["another-sealing-secret"]), "acme", "42") is None
    # Any id changed (another session, requester or expiry) breaks the seal.
    for old, new in (("0123abcd", "0123abce"), ("(requester 7)", "(requester 8)"),
                     (":00 UTC", ":01 UTC"), ("(MFA reset)", "(admin rights)")):  # fmt: skip
        assert notes.read_gate(text.replace(old, new), seal, "acme", "42") is None
    # A rotated key still reads notes sealed before the rotation.
    rotated = notes.Seal(["the-new-sealing-secret", "note-sealing-secret"])
    assert notes.read_gate(text, rotated, "acme", "42") == record


def test_open_verifications_from_before_the_state_indexes_are_indexed_once(store: Store) -> None:
    """A verification opened by a version without the per-state indexes (the metrics' open
    gauges) is added to its state's index when a worker starts; one already there keeps its
    time, and a finished one is left out."""
    waiting, _ = open_one(store, "1", now=1000.0)
    sent = store.advance(open_one(store, "2", now=1100.0)[0], State.SENT, 1200.0)
    done = store.advance(open_one(store, "3")[0], State.ERROR, 1300.0)
    assert done.state is State.ERROR
    store.redis.delete(*store._state_keys())  # as a deployment before the indexes left Redis
    assert store.index_open_states() == 2
    requested, sent_index = (store._state_key(s) for s in (State.REQUESTED, State.SENT))
    assert store.redis.zrange(requested, 0, -1, withscores=True) == [(waiting.id, 1000.0)]
    assert store.redis.zrange(sent_index, 0, -1, withscores=True) == [(sent.id, 1200.0)]
    assert store.index_open_states() == 0
