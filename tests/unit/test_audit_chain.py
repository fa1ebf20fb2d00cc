"""The audit trail's hash chain on a real Redis: a clean trail verifies (also when many workers
append at once, and when retention trimmed its start); an edited field, a deleted event, a forged
or copied one and a cut tail each break it at the right event, with the right reason; events
sealed before a key rotation still verify; ``deskgate audit verify`` says so and exits 1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.conftest import TEST_CHAIN, answering_redis, settings_data
from worker import audit
from worker.audit import verify as audit_verify
from worker.audit.chain import Chain, Verifier, head_key, verify
from worker.commands import cli
from worker.lifecycle import State
from worker.lifecycle.store import Store

PREFIX = "dgtest"
START = 1_790_000_000.0
Entry = tuple[str, dict[str, str]]


def lifecycle(store: Store, ticket: str, now: float = START) -> None:
    """Four events: requested, sent, the gate written, verified."""
    v, _ = store.open(desk="acme", ticket_id=ticket, ticket_display=f"#{ticket}",
                      requester_id="u1", reason="mfa_reset", now=now,
                      resume_at=now + 60)  # fmt: skip
    sent = store.advance(v, State.SENT, now + 1, interview_id=f"iv-{ticket}", sent_at=now + 1)
    store.written(sent, "gate", now + 2)
    store.advance(sent, State.VERIFIED, now + 3)


def trail(redis: Redis[str], lifecycles: int = 5) -> list[Entry]:
    store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN)
    for n in range(lifecycles):
        lifecycle(store, str(n))
    return entries(redis)


def entries(redis: Redis[str]) -> list[Entry]:
    return list(redis.xrange(audit.stream_key(PREFIX)))


def rewrite(redis: Redis[str], change: Callable[[list[Entry]], list[Entry]]) -> None:
    """What someone with write access to Redis (and without the audit secret) can do: rebuild
    the stream, one entry edited, dropped or added (the stream's ids are new, the order kept)."""
    changed = change(entries(redis))
    redis.delete(audit.stream_key(PREFIX))
    for _, fields in changed:
        redis.xadd(audit.stream_key(PREFIX), fields)


def checked(redis: Redis[str], chain: Chain = TEST_CHAIN) -> Verifier:
    return verify(redis, PREFIX, chain, page=7)  # pages that end mid-lifecycle


def test_a_clean_trail_verifies_from_its_first_event(redis: Redis[str]) -> None:
    held = trail(redis)
    verdict = checked(redis)
    assert verdict.broken is None and verdict.checked == len(held) == 20
    assert not verdict.trimmed and verdict.first_id == held[0][0]
    assert held[0][1]["prev"] == "" and held[1][1]["prev"] == held[0][1]["mac"]
    assert redis.get(head_key(PREFIX)) == held[-1][1]["mac"]
    assert "verifies: 20 events from its first event" in audit_verify.describe(verdict)


def test_an_edited_field_breaks_the_chain_at_that_event(redis: Redis[str]) -> None:
    held = trail(redis)
    edited = held[9][1]["id"]

    def edit(found: list[Entry]) -> list[Entry]:
        found[9][1]["requester"] = "someone-else"
        return found

    rewrite(redis, edit)
    broken = checked(redis).broken
    assert broken is not None and (broken.event_id, broken.reason) == (edited, "mac mismatch")


def test_the_last_event_edited_is_a_mac_mismatch_too(redis: Redis[str]) -> None:
    held = trail(redis, 2)

    def edit(found: list[Entry]) -> list[Entry]:
        found[-1][1]["state"] = "failed"
        return found

    rewrite(redis, edit)
    broken = checked(redis).broken
    assert broken is not None and (broken.event_id, broken.reason) == (
        held[-1][1]["id"],
        "mac mismatch",
    )


def test_a_deleted_middle_event_breaks_the_chain_at_its_successor(redis: Redis[str]) -> None:
    held = trail(redis)
    rewrite(redis, lambda found: found[:9] + found[10:])
    broken = checked(redis).broken
    assert broken is not None
    assert (broken.event_id, broken.reason) == (held[10][1]["id"], "missing predecessor")


def test_a_forged_event_breaks_the_chain_at_the_forgery(redis: Redis[str]) -> None:
    held = trail(redis)
    forged = {**held[7][1], "id": "f" * 32, "event": "verification.verified"}
    rewrite(redis, lambda found: [*found[:8], ("", forged), *found[8:]])
    broken = checked(redis).broken
    assert broken is not None and (broken.event_id, broken.reason) == ("f" * 32, "forged")


def test_an_unsealed_event_appended_at_the_end_is_forged(redis: Redis[str]) -> None:
    trail(redis, 1)
    redis.xadd(audit.stream_key(PREFIX), {"id": "e" * 32, "event": "verification.verified"})
    broken = checked(redis).broken
    assert broken is not None and (broken.event_id, broken.reason) == ("e" * 32, "forged")


def test_a_copied_event_is_forged(redis: Redis[str]) -> None:
    held = trail(redis, 1)
    redis.xadd(audit.stream_key(PREFIX), held[-1][1])
    broken = checked(redis).broken
    assert broken is not None and broken.reason == "forged"


def test_a_cut_tail_is_found_from_the_chains_head(redis: Redis[str]) -> None:
    trail(redis, 2)
    rewrite(redis, lambda found: found[:-2])
    broken = checked(redis).broken
    assert broken is not None and broken.reason == "missing tail"
    assert broken.stream_id == entries(redis)[-1][0]


def test_a_start_trimmed_by_retention_verifies_and_says_so(redis: Redis[str]) -> None:
    held = trail(redis)
    redis.xtrim(audit.stream_key(PREFIX), maxlen=11, approximate=False)
    verdict = checked(redis)
    assert verdict.broken is None and verdict.trimmed and verdict.checked == 11
    assert verdict.first_id == held[9][0]
    assert "where retention trimmed it" in audit_verify.describe(verdict)


def test_events_from_before_the_chain_are_counted_not_checked(redis: Redis[str]) -> None:
    """A deployment upgraded to the chain holds older, unsealed events first: they are not a
    break, but no unsealed event may follow a sealed one, and the chain must start at its
    first event after them."""
    for n in range(3):
        redis.xadd(audit.stream_key(PREFIX), {"id": f"{n:032x}", "event": "verification.sent"})
    trail(redis, 2)
    verdict = checked(redis)
    assert verdict.broken is None and (verdict.unsealed, verdict.checked) == (3, 8)
    assert "3 earlier events from before the chain are not sealed" in audit_verify.describe(verdict)
    rewrite(redis, lambda found: found[:3] + found[4:])  # the chain's first event, gone
    broken = checked(redis).broken
    assert broken is not None and broken.reason == "missing predecessor"


def test_since_starts_mid_trail_without_calling_it_trimmed(redis: Redis[str]) -> None:
    held = trail(redis)
    since = int(held[10][0].split("-")[0])
    verdict = verify(redis, PREFIX, TEST_CHAIN, since_ms=since)
    assert verdict.broken is None and not verdict.trimmed and verdict.checked >= 10


def test_concurrent_workers_append_one_clean_chain(redis: Redis[str]) -> None:
    """Eight workers, each with its own client and store, append at once: every append waits
    for the head the last one left, so the chain never forks and every event is on it."""

    def worker(n: int) -> None:
        client = answering_redis()  # its own connections, as a worker process has
        store = Store(client, PREFIX, 3600, chain=TEST_CHAIN)
        for t in range(15):
            lifecycle(store, f"{n}-{t}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verdict = checked(redis)
    assert verdict.broken is None and verdict.checked == 8 * 15 * 4 == len(entries(redis))


def test_events_sealed_before_a_key_rotation_still_verify(redis: Redis[str]) -> None:
    old, new = b"the-old-audit-key", b"the-new-audit-key"
    lifecycle(Store(redis, PREFIX, 3600, chain=Chain([old])), "1")
    lifecycle(Store(redis, PREFIX, 3600, chain=Chain([new, old])), "2")
    assert checked(redis, Chain([new, old])).broken is None
    broken = checked(redis, Chain([new])).broken  # the old key forgotten: its events do not
    assert broken is not None and broken.reason == "mac mismatch"


def test_the_key_is_derived_from_note_secret_unless_audit_secret_is_set() -> None:
    fields = {"id": "1", "prev": ""}
    derived = Chain.from_secrets([], ["note-sealing-secret"])
    own = Chain.from_secrets(["audit-chain-secret-1"], ["note-sealing-secret"])
    assert derived.mac(fields) != own.mac(fields)
    with pytest.raises(ValueError, match="non-empty"):
        Chain.from_secrets([], [""])


def test_the_verify_command_names_the_first_broken_link(
    redis: Redis[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from connectors.registry import SETTINGS

    loaded = SETTINGS(**settings_data(audit_secret="audit-chain-secret-1"))
    monkeypatch.setattr(cli, "load_settings", lambda: loaded)
    store = Store(redis, loaded.key_prefix, 3600, chain=Chain.of(loaded))
    for n in range(3):
        lifecycle(store, str(n))
    assert cli.main(["audit", "verify"]) == 0
    assert "the audit trail verifies: 12 events" in capsys.readouterr().out
    stream = audit.stream_key(loaded.key_prefix)
    victim, _ = redis.xrange(stream)[5]
    redis.xdel(stream, victim)
    assert cli.main(["audit", "verify"]) == 1
    following: dict[str, Any] = redis.xrange(stream)[5][1]
    assert f"missing predecessor at event {following['id']}" in capsys.readouterr().out
    assert cli.main(["audit", "verify", "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err


def test_the_report_says_when_the_trail_it_read_does_not_verify(
    redis: Redis[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from connectors.registry import SETTINGS

    loaded = SETTINGS(**settings_data())
    monkeypatch.setattr(cli, "load_settings", lambda: loaded)
    store = Store(redis, loaded.key_prefix, 3600, chain=Chain.of(loaded))
    for n in range(3):
        lifecycle(store, str(n), now=time.time())
    page = tmp_path / "report.html"
    argv = ["report", "--since", "1h", "--html", str(page)]
    assert cli.main([*argv, "--format", "json"]) == 0
    trail_of = json.loads(capsys.readouterr().out)["trail"]
    assert trail_of["verified"] is True and "verifies: 12 events" in trail_of["detail"]
    assert 'class="broken"' not in page.read_text()

    stream = audit.stream_key(loaded.key_prefix)
    redis.xdel(stream, redis.xrange(stream)[6][0])  # the second verification's outcome, gone
    assert cli.main([*argv, "--format", "json"]) == 0
    trail_of = json.loads(capsys.readouterr().out)["trail"]
    assert trail_of["verified"] is False and "missing predecessor" in trail_of["detail"]
    assert '<div class="broken" role="alert">The audit trail does NOT verify' in page.read_text()
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[3].startswith("WARNING: the audit trail does NOT verify")
    assert "WARNING" in err


def test_a_short_audit_secret_is_refused_naming_the_field() -> None:
    from pydantic import ValidationError

    from connectors.registry import SETTINGS

    for field in ("audit_secret", "audit_previous_secret"):
        with pytest.raises(ValidationError, match=f"{field}\n.*at least 16 characters"):
            SETTINGS(**settings_data(**{field: "short"}))


def test_check_config_says_what_keys_the_chain(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from connectors.registry import SETTINGS

    for extra, says in (
        ({}, "a key derived from note_secret"),
        ({"audit_secret": "audit-chain-secret-1"}, "audit_secret"),
    ):
        loaded = SETTINGS(**settings_data(**extra))
        monkeypatch.setattr(cli, "load_settings", lambda loaded=loaded: loaded)
        assert cli.main(["check-config"]) == 0
        assert f"; chained with {says}\n" in capsys.readouterr().out
