"""``deskgate privacy export|erase --person X`` on a real Redis: what Deskgate holds about one
person (verification records, audit events, link-cap entries, first-seen ledger entries),
found by desk requester or by address, exported, and erased, each request audited without the
person's data."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from redis import Redis

from config.settings import DeskConfig, Settings
from worker import audit
from worker.audit.chain import Chain
from worker.commands import cli
from worker.commands.privacy import BadPerson, Privacy
from worker.commands.report import aggregate
from worker.lifecycle import State
from worker.lifecycle.caps import LinkCap
from worker.lifecycle.first_seen import FirstSeen
from worker.lifecycle.pseudonym import Pseudonyms
from worker.lifecycle.store import Store, Verification

JANE, SAM = "jane.doe@acme.test", "sam.lee@acme.test"


def verify(
    store: Store, caps: LinkCap, config: DeskConfig, ticket: str, requester: str, to: str
) -> Verification:
    """A verification of ``ticket`` whose link went to ``to``, verified and written."""
    v, _ = store.open(
        desk="acme_zendesk", ticket_id=ticket, ticket_display=f"#{ticket}",
        requester_id=requester, reason="MFA reset", now=1000, resume_at=1100,
    )  # fmt: skip
    key = caps.requester_key("EMAIL", to)
    caps.take(verification=v.id, desk="acme_zendesk", ticket_id=ticket, channel="EMAIL",
              destination=to, config=config, now=1000)  # fmt: skip
    v = store.advance(v, State.SENT, 1001, interview_id=f"iv-{ticket}", index_interview=True,
                      requester_key=key, destination="j***@acme.test")  # fmt: skip
    v = store.advance(v, State.VERIFIED, 1002)
    store.update(v.id, written=State.VERIFIED.value)
    store.release(v)
    return v


@pytest.fixture
def world(settings: Settings, redis: Redis[str]) -> Privacy:
    config = settings.desks["acme_zendesk"]
    store = Store(redis, settings.key_prefix, 86400, chain=Chain.of(settings))
    caps = LinkCap(redis, settings.key_prefix, Pseudonyms(settings.note_secrets, "requester"))
    ledger = FirstSeen(redis, settings.key_prefix, Pseudonyms(settings.note_secrets, "first seen"))
    verify(store, caps, config, "1", "7", JANE)
    verify(store, caps, config, "2", "7", JANE)
    verify(store, caps, config, "3", "8", SAM)
    ledger.since("acme_zendesk", "7", "email", JANE, 900)
    ledger.since("acme_zendesk", "8", "email", SAM, 900)
    return Privacy(redis, settings)


def test_an_export_by_requester_holds_their_records_events_caps_and_ledger(world: Privacy) -> None:
    out = world.export(world.person("acme_zendesk:7"))
    assert sorted(v["ticket_id"] for v in out["verifications"]) == ["1", "2"]
    assert {e["ticket"] for e in out["audit_events"]} == {"#1", "#2"}
    assert {e["requester"] for e in out["audit_events"]} == {"7"}
    [cap] = out["link_caps"]
    assert len(cap["verifications"]) == 2
    assert len(out["first_seen"]) == 1
    assert SAM not in json.dumps(out) and "#3" not in json.dumps(out)


def test_an_export_by_address_finds_the_same_person_through_the_keyed_hash(
    world: Privacy,
) -> None:
    by_address = world.export(world.person(" Jane.Doe@acme.test"))
    by_requester = world.export(world.person("acme_zendesk:7"))
    assert by_address["verifications"] == by_requester["verifications"]
    assert by_address["link_caps"] == by_requester["link_caps"]


def test_an_erase_removes_the_person_and_leaves_everyone_else(
    world: Privacy, redis: Redis[str], settings: Settings
) -> None:
    person = world.person(JANE)
    planned = world.erase(person, dry_run=True)
    assert len(planned["verifications"]) == 2 and planned["dry_run"]
    assert world.export(person)["verifications"]  # a dry run changes nothing
    done = world.erase(person)
    assert done["verifications"] == planned["verifications"]
    after = world.export(world.person("acme_zendesk:7"))
    assert (after["verifications"], after["link_caps"], after["first_seen"]) == ([], [], [])
    assert [e["event"] for e in after["audit_events"]] == []
    assert not redis.exists(*(f"dgtest:v:{vid}" for vid in done["verifications"]))
    assert not redis.exists("dgtest:iv:iv-1", "dgtest:iv:iv-2")
    sam = world.export(world.person("acme_zendesk:8"))
    assert len(sam["verifications"]) == 1 and sam["audit_events"] and sam["first_seen"]


def test_each_request_is_audited_without_the_persons_data(
    world: Privacy, redis: Redis[str]
) -> None:
    world.export(world.person(JANE))
    world.erase(world.person(" " + JANE.upper()))  # however the address is written
    events = [fields for _, fields in redis.xrange("dgtest:audit")]
    requests = [e for e in events if e["event"].startswith("privacy.")]
    assert [e["event"] for e in requests] == ["privacy.exported", "privacy.erased"]
    assert requests[0]["requester_key"] == requests[1]["requester_key"]  # one person, matched
    text = json.dumps(requests)
    assert "jane" not in text.lower() and '"requester": "7"' not in text
    assert requests[1]["requester"] == ""
    assert "2 verifications" in requests[1]["detail"]
    assert "erased_entries" in requests[1]["detail"]  # which trail entries went (the hook)


def test_an_open_verification_is_kept_until_it_ends(settings: Settings, redis: Redis[str]) -> None:
    store = Store(redis, settings.key_prefix, 86400, chain=Chain.of(settings))
    v, _ = store.open(desk="acme_zendesk", ticket_id="9", ticket_display="#9", requester_id="7",
                      reason="MFA reset", now=1000, resume_at=1100)  # fmt: skip
    privacy = Privacy(redis, settings)
    done = privacy.erase(privacy.person("acme_zendesk:7"))
    assert done["open_verifications_kept"] == [v.id] and done["verifications"] == []
    assert store.open_for("acme_zendesk", "9") is not None
    assert any(f.get("verification") == v.id for _, f in redis.xrange("dgtest:audit"))


def test_a_person_that_names_nobody_is_refused_saying_what_is_taken(world: Privacy) -> None:
    with pytest.raises(BadPerson, match="<desk>:<requester id>"):
        world.person("nobody")


def test_the_command_prints_json_and_refuses_a_bad_person(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], world: Privacy
) -> None:
    monkeypatch.setattr(cli, "load_settings", lambda: world.settings)
    assert cli.main(["privacy", "export", "--person", "acme_zendesk:7"]) == 0
    assert len(json.loads(capsys.readouterr().out)["verifications"]) == 2
    assert cli.main(["privacy", "erase", "--person", "acme_zendesk:7", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    assert cli.main(["privacy", "erase", "--person", "what"]) == 2
    assert "--person" in capsys.readouterr().err


def test_the_report_passes_over_a_requests_event_as_no_verification_of_its_own(
    world: Privacy, redis: Redis[str]
) -> None:
    world.export(world.person(JANE))
    events = [audit.event_of(fields) for _, fields in redis.xrange("dgtest:audit")]
    assert events[-1]["event"] == "privacy.exported"
    report = aggregate.build(events, datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC))
    assert report.skipped == 0
