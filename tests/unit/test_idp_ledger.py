"""The IdP ledger: entries by IdP user, bounded by the retention."""

from __future__ import annotations

from redis import Redis

from worker.idp.ledger import IdpLedger, LedgerEntry


def entry(at: float, **fields: str) -> LedgerEntry:
    values = {"desk": "zd", "ticket": "42", "verification": "v1", **fields}
    return LedgerEntry(kind="verification", at=at, **values)


def test_entries_are_read_back_by_user_and_window_oldest_first(redis: Redis[str]) -> None:
    ledger = IdpLedger(redis, "dgtest", retention_seconds=3600)
    ledger.record("okta", "00u1", entry(1000, state="failed"))
    ledger.record("okta", "00u1", entry(1100, state="verified", reason="MFA reset"))
    ledger.record("okta", "00u2", entry(1050, state="verified"))
    got = ledger.entries("okta", "00u1", 900, 1200)
    assert [(e.at, e.state) for e in got] == [(1000, "failed"), (1100, "verified")]
    assert ledger.entries("okta", "00u1", 1050, 1200)[0].reason == "MFA reset"
    assert ledger.entries("entra", "00u1", 0, 2000) == []


def test_entries_older_than_the_retention_are_trimmed_and_the_key_expires(
    redis: Redis[str],
) -> None:
    ledger = IdpLedger(redis, "dgtest", retention_seconds=100)
    ledger.record("okta", "00u1", entry(1000))
    ledger.record("okta", "00u1", entry(1200, verification="v2"))
    assert [e.verification for e in ledger.entries("okta", "00u1", 0, 2000)] == ["v2"]
    assert 0 < redis.ttl(ledger.key("okta", "00u1")) <= 100
