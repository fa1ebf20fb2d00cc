"""Every key Deskgate leaves in Redis expires, except the documented long-lived ones: the check
the end-to-end and fault suites run after every run, and the abandoning of a verification whose
ticket was deleted, against a real Redis."""

from __future__ import annotations

from redis import Redis

from sandbox.retention import keys_without_ttl
from tests.conftest import TEST_CHAIN
from worker.lifecycle import State
from worker.lifecycle.store import Store, Verification

PREFIX = "dgtest"
RETENTION = 3600


def opened(store: Store, ticket: str, session: str = "") -> Verification:
    v, _ = store.open(
        desk="acme",
        ticket_id=ticket,
        ticket_display=f"#{ticket}",
        requester_id="7",
        reason="MFA reset",
        now=1000.0,
        resume_at=1180.0,
    )
    store.advance(v, State.SENT, 1001, interview_id=session or f"iv{ticket}",
                  index_interview=True)  # fmt: skip
    return store.get(v.id) or v


def test_the_check_catches_a_key_without_ttl_and_spares_the_long_lived_ones(
    redis: Redis[str],
) -> None:
    store = Store(redis, PREFIX, RETENTION, chain=TEST_CHAIN)
    waiting = opened(store, "1")  # open: record, session index and open marker may persist
    finished = opened(store, "2")
    store.advance(finished, State.VERIFIED, 1002)
    store.set_cursor("acme", "cursor-value")
    redis.set(f"{PREFIX}:seen:incode:x", "1", ex=60)
    redis.rpush("deskgate-test-queue", "task")  # Celery's
    redis.set("_kombu.binding.deskgate-test-queue", "x")
    assert keys_without_ttl(redis, PREFIX, ["deskgate-test-queue"], match="*") == []

    redis.set(f"{PREFIX}:stray", "1")
    redis.hset(f"{PREFIX}:v:orphan", mapping={"state": "sent", "desk": "acme", "ticket_id": "9"})
    redis.set(f"{PREFIX}:iv:orphan-session", "orphan")
    assert keys_without_ttl(redis, PREFIX) == [
        f"{PREFIX}:iv:orphan-session",
        f"{PREFIX}:stray",
        f"{PREFIX}:v:orphan",
    ]
    assert waiting.state == State.SENT


def test_an_abandoned_verification_expires_with_its_session_index(redis: Redis[str]) -> None:
    store = Store(redis, PREFIX, RETENTION, chain=TEST_CHAIN)
    v = opened(store, "3")
    store.abandon(v)
    assert store.open_for("acme", "3") is None
    assert store.due(10**10) == []
    assert 0 < redis.ttl(f"{PREFIX}:v:{v.id}") <= RETENTION
    assert 0 < redis.ttl(f"{PREFIX}:iv:iv3") <= RETENTION
    assert keys_without_ttl(redis, PREFIX) == []
    # The ticket is free for a new verification (with a session of its own: iv3 stays v's).
    assert opened(store, "3", session="iv3-new").id != v.id


def test_abandoning_keeps_a_finished_verifications_own_ttl(redis: Redis[str]) -> None:
    store = Store(redis, PREFIX, RETENTION, chain=TEST_CHAIN)
    v = opened(store, "4")
    store.advance(v, State.FAILED, 1002)
    redis.expire(f"{PREFIX}:v:{v.id}", 100)
    store.abandon(store.get(v.id) or v)
    assert 0 < redis.ttl(f"{PREFIX}:v:{v.id}") <= 100
