"""Deskgate's first-seen ledger against a real Redis: what dates a requester's field when the
desk keeps no record of its changes."""

from __future__ import annotations

from redis import Redis

from worker.lifecycle.first_seen import LEDGER_DAYS, FirstSeen
from worker.lifecycle.pseudonym import Pseudonyms

OLD, NEW = "previous-note-secret-0123456789", "current-note-secret-0123456789"


def ledger(redis: Redis[str], *secrets: str) -> FirstSeen:
    return FirstSeen(redis, "dgtest", Pseudonyms(list(secrets), "first seen"))


def test_the_first_sighting_starts_the_clock_and_the_same_value_keeps_it(
    redis: Redis[str],
) -> None:
    seen = ledger(redis, NEW)
    assert seen.since("zd", "7", "external_id", "E-1001", 1000.0) == 1000.0
    assert seen.since("zd", "7", "external_id", " e-1001 ", 5000.0) == 1000.0  # as written
    assert seen.since("zd", "8", "external_id", "E-1001", 5000.0) == 5000.0  # another person


def test_a_changed_value_restarts_the_clock(redis: Redis[str]) -> None:
    seen = ledger(redis, NEW)
    seen.since("zd", "7", "external_id", "E-1001", 1000.0)
    assert seen.since("zd", "7", "external_id", "E-6666", 2000.0) == 2000.0
    assert seen.since("zd", "7", "external_id", "E-1001", 3000.0) == 3000.0  # back: new again


def test_redis_holds_no_value_nor_id_and_every_entry_expires(redis: Redis[str]) -> None:
    ledger(redis, NEW).since("acme_zendesk", "u-4711", "user_field:employee_id", "E-1001", 1.0)
    [key] = redis.keys("dgtest:firstseen:*")
    stored = " ".join([key, *redis.hgetall(key).values()])
    for secret in ("E-1001", "e-1001", "u-4711", "acme_zendesk", "employee_id"):
        assert secret not in stored
    assert 0 < redis.ttl(key) <= LEDGER_DAYS * 86400


def test_a_rotated_note_secret_restarts_no_clock(redis: Redis[str]) -> None:
    ledger(redis, OLD).since("zd", "7", "external_id", "E-1001", 1000.0)
    rotated = ledger(redis, NEW, OLD)
    assert rotated.since("zd", "7", "external_id", "E-1001", 9000.0) == 1000.0
    assert ledger(redis, NEW).since("zd", "7", "external_id", "E-1001", 9500.0) == 1000.0
    assert rotated.since("zd", "9", "external_id", "E-2002", 9000.0) == 9000.0
