"""The audit trail on a real Redis: events appended with their transitions (and only then), the
whole lifecycle's sequence through ``Flow``, stable error codes, retention, listeners, no
personal data, and the streaming export (``deskgate audit export``)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis import Redis

from tests.conftest import TEST_CHAIN
from tests.unit.test_flow import DESK, HOUR, START, World, started, world
from worker import audit
from worker.commands import cli
from worker.lifecycle import State
from worker.lifecycle.store import Store

PREFIX = "dgtest"


@pytest.fixture
def w(redis: Redis[str]) -> World:
    return world(redis)


def events(redis: Redis[str], prefix: str = PREFIX) -> list[dict[str, Any]]:
    return [audit.event_of(f) for _, f in redis.xrange(audit.stream_key(prefix))]


def opened(store: Store, ticket: str = "42", now: float = START) -> Any:
    v, _ = store.open(desk=DESK, ticket_id=ticket, ticket_display=f"#{ticket}",
                      requester_id="u42", reason="mfa_reset", now=now, resume_at=now + 60,
                      origin="push")  # fmt: skip
    return v


# -- appended with the transition, and only then ----------------------------------------------


def test_a_transition_appends_its_event_and_one_that_did_not_move_appends_nothing(
    redis: Redis[str],
) -> None:
    store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN)
    v = opened(store)
    again = opened(store)  # the ticket's verification is open: nothing new
    assert again.id == v.id
    sent = store.advance(v, State.SENT, START + 1, interview_id="iv-1", sent_at=START + 1)
    store.advance(v, State.SENT, START + 2)  # already sent: a no-op
    store.advance(sent, State.REVIEW, START + 3)
    store.advance(sent, State.EXPIRED, START + 4, overturn=True)  # no longer "sent": no-op
    store.advance(replace_id(v, "gone"), State.SENT, START + 5)  # no record at all
    assert [e["event"] for e in events(redis)] == [
        "verification.requested",
        "verification.sent",
        "verification.review",
    ]


def replace_id(v: Any, vid: str) -> Any:
    from dataclasses import replace

    return replace(v, id=vid)


def test_an_adoption_refused_appends_nothing(redis: Redis[str]) -> None:
    store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN)
    v = opened(store)
    store.advance(v, State.SENT, START + 1, interview_id="iv-1", index_interview=True)
    refused = store.adopt(vid=v.id, interview_id="iv-1", state=State.SENT, now=START + 2,
                          desk=DESK, ticket_id="43", ticket_display="#43", requester_id="u43",
                          reason="mfa_reset")  # fmt: skip
    assert refused == "record"
    assert [e["event"] for e in events(redis)] == ["verification.requested", "verification.sent"]


def test_abandoning_appends_once(redis: Redis[str]) -> None:
    store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN)
    v = opened(store)
    store.abandon(v, START + 10)
    store.abandon(v, START + 11)
    assert [e["event"] for e in events(redis)] == [
        "verification.requested",
        "verification.abandoned",
    ]
    assert events(redis)[-1]["time"] == audit.rfc3339(START + 10)


# -- a whole lifecycle, through the steps ------------------------------------------------------


def test_a_verified_lifecycle_is_exactly_this_sequence_of_events(w: World) -> None:
    vid = started(w)
    w.advance(60)
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    got = events(w.store.redis)
    assert [(e["event"], e["state"], e["code"]) for e in got] == [
        ("verification.requested", "requested", ""),
        ("verification.sent", "sent", ""),
        ("ticket.written", "sent", "gate"),
        ("verification.verified", "verified", ""),
        ("ticket.written", "verified", "outcome"),
    ]
    assert len({e["id"] for e in got}) == 5
    for e in got:
        assert set(e) == set(audit.FIELDS) and e["schema"] == 1
        assert (e["desk"], e["ticket"], e["verification"]) == (DESK, "#42", vid)
        assert e["requester"] == "u42" and e["reason"] == "MFA reset"
        assert e["origin"] == "poll"  # Flow.start's default: what the poller hands over
        assert e["started_at"] == audit.rfc3339(START)
    requested, sent, gate, verified, written = got
    assert requested["session"] == "" and requested["sent_at"] is None
    assert sent["session"] and sent["channel"] == "EMAIL"
    assert sent["destination"] == "j***@acme.test"
    assert sent["sent_at"] == audit.rfc3339(START) == gate["state_at"]
    assert verified["outcome"] == "verified" == written["outcome"]
    assert verified["time"] == audit.rfc3339(START + 60) == written["state_at"]
    assert requested["outcome"] == sent["outcome"] == gate["outcome"] == ""


def test_a_push_start_is_recorded_as_a_push(w: World) -> None:
    w.desk.add("42")
    w.flow.start(DESK, "42", "push")
    assert {e["origin"] for e in events(w.store.redis)} == {"push"}


def test_the_requester_changing_overturns_with_its_code(w: World) -> None:
    vid = started(w)
    w.desk.tickets["42"] = w.desk.tickets["42"].__class__(
        **{**w.desk.tickets["42"].__dict__, "requester_id": "someone-else", "version": "9"}
    )
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    final = [e for e in events(w.store.redis) if e["event"].startswith("verification.")][-1]
    assert (final["event"], final["code"], final["outcome"]) == (
        "verification.error",
        "requester_changed",
        "error",
    )


def test_a_contact_too_new_ends_in_error_with_its_code(w: World) -> None:
    w.desk.add("42")
    w.desk.changed = START - 2 * HOUR
    w.flow.start(DESK, "42")
    got = events(w.store.redis)
    assert [(e["event"], e["code"]) for e in got] == [
        ("verification.requested", ""),
        ("verification.error", "contact_too_new"),
        ("ticket.written", "outcome"),
    ]
    assert "jane" not in json.dumps(got)


def test_a_link_cap_ends_in_error_with_code_link_cap(redis: Redis[str]) -> None:
    w = world(redis, max_links_per_ticket=1)
    vid = started(w)
    w.incode.decision = "failed"
    w.flow.check(vid, "webhook")
    w.desk.tickets["42"] = w.desk.tickets["42"].__class__(
        **{**w.desk.tickets["42"].__dict__, "reason": "MFA reset", "marker": None}
    )
    w.flow.start(DESK, "42")  # flagged again within the window: over the cap
    codes = [e["code"] for e in events(redis) if e["event"] == "verification.error"]
    assert codes == ["link_cap"]


def test_every_cap_hit_is_an_audit_event_with_its_window_and_a_keyed_requester(
    redis: Redis[str],
) -> None:
    """The metric cannot name the person; each cap hit's event carries a keyed hash of whom the
    cap counted, the same on every ticket and requester record of that inbox, so a SIEM can
    group repeated hits on one person without seeing the address."""
    w = world(redis)
    for ticket in ("1", "2", "3", "4"):  # the fourth in the hour: the short window's cap
        w.desk.add(ticket)
        w.flow.start(DESK, ticket)
    w.advance(HOUR + 1)
    for ticket in ("5", "6", "7"):  # the sixth in the day: the long window's cap
        w.desk.add(ticket)
        w.flow.start(DESK, ticket)
    got = events(redis)
    caps = [(e["ticket"], e["code"]) for e in got if e["event"] == "verification.error"]
    assert caps == [("#4", "link_cap"), ("#7", "link_cap_long")]
    keys = {e["requester_key"] for e in got if e["event"] != "verification.requested"}
    [key] = keys  # seven requester records, one inbox
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert key not in hashlib.sha256(b"EMAIL:jane@acme.test").hexdigest()  # keyed, not plain
    assert "jane" not in json.dumps(got)


def test_an_expired_link_says_so(w: World) -> None:
    vid = started(w)
    w.advance(31 * 60)
    w.flow.check(vid, "sweep")
    final = [e for e in events(w.store.redis) if e["event"] == "verification.expired"]
    assert [e["code"] for e in final] == ["link_expired"]


# -- listeners -------------------------------------------------------------------------------


def test_listeners_see_each_event_as_recorded_and_a_failing_one_harms_nothing(
    w: World,
) -> None:
    seen: list[dict[str, Any]] = []

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("a listener's bug")

    audit.listen(broken)
    audit.listen(seen.append)
    try:
        started(w)
    finally:
        audit.unlisten(broken)
        audit.unlisten(seen.append)
    assert seen == events(w.store.redis)
    assert [e["event"] for e in seen] == [
        "verification.requested",
        "verification.sent",
        "ticket.written",
    ]


# -- retention -------------------------------------------------------------------------------


def test_the_sweep_trims_events_older_than_the_audit_retention(redis: Redis[str]) -> None:
    store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN, audit_retention_seconds=10 * 86400)
    key = audit.stream_key(PREFIX)
    now = datetime(2026, 11, 28, tzinfo=UTC).timestamp()
    for age_days in (30, 11, 9, 1):
        at = int((now - age_days * 86400) * 1000)
        redis.xadd(key, {"event": f"{age_days}d"}, id=f"{at}-0")
    assert store.trim_audit(now) == 2
    assert [f["event"] for _, f in redis.xrange(key)] == ["9d", "1d"]


def test_the_stream_is_bounded_by_audit_max_events(redis: Redis[str]) -> None:
    store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN, audit_max_events=50)
    for i in range(400):
        opened(store, ticket=str(i))
    # MAXLEN ~ trims whole nodes (100 entries by default), so up to one node over the bound.
    assert 50 <= redis.xlen(audit.stream_key(PREFIX)) <= 150


# -- personal data ---------------------------------------------------------------------------


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    local=st.from_regex(r"[a-z][a-z0-9._+-]{2,20}", fullmatch=True),
    phone=st.from_regex(r"\+[1-9][0-9]{9,13}", fullmatch=True),
)
def test_no_address_or_phone_survives_into_an_event(local: str, phone: str) -> None:
    """Whatever reached a record's free text (a vendor's message, an agent's typing), an event
    carries it masked."""
    email = f"{local}@acme.test"
    entry = {
        "event": "verification.error",
        "state": "error",
        "time": "1800000000.0",
        "detail": f"Incode said {email} or {phone} is wrong",
    }
    event = audit.event_of(entry)
    text = json.dumps(event)
    assert email not in text and phone not in text and phone[1:] not in text


def test_no_event_of_a_lifecycle_holds_the_requesters_address_or_phone(w: World) -> None:
    vid = started(w)
    w.incode.decision = "review"
    w.flow.check(vid, "webhook")
    w.incode.decision = "failed"
    w.flow.check(vid, "webhook")
    text = json.dumps(events(w.store.redis))
    assert "jane@acme.test" not in text and "4155550134" not in text
    assert "link.invalid" not in text  # the link itself is never recorded


# -- export ----------------------------------------------------------------------------------


def fill(redis: Redis[str], count: int, desks: tuple[str, ...] = ("a", "b")) -> None:
    key = audit.stream_key(PREFIX)
    base = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    for i in range(count):
        fields = audit.entry(audit.head("verification.requested", base / 1000 + i), {})
        fields.update(desk=desks[i % len(desks)], ticket=str(i), state="requested")
        redis.xadd(key, fields, id=f"{base + i * 3_600_000}-0")  # an hour apart


def test_export_reads_the_period_and_the_desk_a_page_at_a_time(redis: Redis[str]) -> None:
    fill(redis, 48)
    calls: list[int] = []
    real = redis.xrange

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["count"])
        return real(*args, **kwargs)

    redis.xrange = counted  # type: ignore[method-assign]
    since, until = datetime(2026, 1, 1, 2, tzinfo=UTC), datetime(2026, 1, 2, 1, tzinfo=UTC)
    found = audit.read(redis, PREFIX, since, until, desk="a", page=5)
    first = next(found)
    assert first["ticket"] == "2" and len(calls) == 1  # one page read, not the whole range
    rest = list(found)
    assert [e["ticket"] for e in [first, *rest]] == [str(i) for i in range(2, 26, 2)]
    assert calls == [5] * 5  # 24 entries in range, 5 per page: 5 pages, the last one short


def test_export_as_csv_has_the_schemas_columns_in_order(redis: Redis[str]) -> None:
    fill(redis, 3)
    out = io.StringIO()
    since = datetime(2025, 12, 31, tzinfo=UTC)
    until = datetime(2026, 1, 2, tzinfo=UTC)
    count = audit.write(audit.read(redis, PREFIX, since, until), out, "csv")
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert count == 3 and rows[0] == list(audit.FIELDS)
    assert [r[audit.FIELDS.index("ticket")] for r in rows[1:]] == ["0", "1", "2"]
    assert rows[1][audit.FIELDS.index("sent_at")] == ""  # null is an empty cell
    # A detail Incode or a desk wrote that a spreadsheet would run stays text.
    hostile = {**{f: "" for f in audit.FIELDS}, "detail": '=HYPERLINK("http://x","y")'}
    out = io.StringIO()
    audit.write(iter([hostile]), out, "csv")
    [_, row] = list(csv.reader(io.StringIO(out.getvalue())))
    assert row[audit.FIELDS.index("detail")] == '\'=HYPERLINK("http://x","y")'


def test_the_export_command_writes_jsonl_and_refuses_bad_input(
    redis: Redis[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from tests.conftest import settings_data

    fill(redis, 4, desks=("acme_zendesk", "other"))
    from connectors.registry import SETTINGS

    loaded = SETTINGS(**settings_data())
    monkeypatch.setattr(cli, "load_settings", lambda: loaded)
    argv = ["audit", "export", "--since", "2026-01-01", "--until", "2026-01-02T00:00:00Z"]
    assert cli.main([*argv, "--desk", "acme_zendesk"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["ticket"] for e in lines] == ["0", "2"] and "exported 2" in err
    written = tmp_path / "trail.csv"
    written.write_text("an older export\n")
    written.chmod(0o644)
    assert cli.main([*argv, "--format", "csv", "--output", str(written)]) == 0
    assert written.stat().st_mode & 0o777 == 0o600 and len(written.read_text().splitlines()) == 5
    capsys.readouterr()
    assert cli.main([*argv, "--desk", "nope"]) == 2
    assert "no desk 'nope'" in capsys.readouterr().err
    assert cli.main(["audit", "export", "--since", "last tuesday"]) == 2
    assert "is not a period" in capsys.readouterr().err
    # No SIEM configured: sink-status says so (every event would otherwise look "unsent").
    assert cli.main(["audit", "sink-status"]) == 0
    assert "no audit_sink configured: the audit trail (4 events)" in capsys.readouterr().out


def test_ages_and_dates_parse() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert audit.parse_moment("30d", now) == datetime(2026, 10, 29, 12, tzinfo=UTC)
    assert audit.parse_moment("15m", now) == datetime(2026, 11, 28, 11, 45, tzinfo=UTC)
    assert audit.parse_moment("2026-01-01", now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert audit.rfc3339(1_764_356_594.1234) == "2025-11-28T19:03:14.123Z"


def test_a_verification_redis_forgot_is_recorded_as_recovered(w: World) -> None:
    vid = started(w)
    redis = w.store.redis
    redis.delete(*[k for k in redis.scan_iter(f"{PREFIX}:*") if k != audit.stream_key(PREFIX)])
    w.flow.start(DESK, "42", "push")  # the push that finds the gated ticket
    recovered = events(redis)[-1]
    assert (recovered["event"], recovered["origin"], recovered["verification"]) == (
        "verification.recovered",
        "recovery",
        vid,
    )
    assert recovered["state"] == "sent" and recovered["session"] == events(redis)[1]["session"]


def test_a_ticket_whose_gate_note_cannot_be_believed_ends_unrecoverable(w: World) -> None:
    w.desk.add("42")
    ticket = w.desk.tickets["42"]
    w.desk.tickets["42"] = ticket.__class__(**{**ticket.__dict__, "marker": "pending"})
    w.flow.start(DESK, "42", "push")  # marker there, but no note Deskgate wrote
    assert [(e["event"], e["origin"], e["code"]) for e in events(w.store.redis)][:2] == [
        ("verification.requested", "push", ""),
        ("verification.error", "push", "unrecoverable"),
    ]


def test_a_desk_refusing_for_good_ends_ticket_refused_and_its_note_is_audited(
    redis: Redis[str],
) -> None:
    from connectors.http import Fatal
    from worker.lifecycle.flow import REFUSALS

    w = world(redis, link_validity_minutes=7 * 24 * 60)
    w.desk.add("42")
    w.desk.refuse_gate = Fatal("zendesk", "Status: hold is not enabled", 422)
    w.flow.start(DESK, "42")
    v = w.store.open_for(DESK, "42")
    assert v is not None
    for _ in range(REFUSALS - 1):
        [(_, due)] = redis.zrange(w.store._key("due"), 0, -1, withscores=True)
        w.clock[0] = due
        w.flow.check(v.id, "sweep")
    assert [(e["event"], e["code"]) for e in events(redis)] == [
        ("verification.requested", ""),
        ("verification.sent", ""),  # no gate write: the desk refused every one
        ("verification.error", "ticket_refused"),
        ("ticket.written", "outcome"),
    ]


def test_the_codes_docs_list_are_the_codes_the_report_can_name() -> None:
    """docs/audit.md's table of codes and ``audit.CODES`` (the report's words) name the same
    codes: a code added on one side only would reach a reader unexplained."""
    table = (
        (Path(__file__).parents[2] / "docs" / "audit.md").read_text().split("Codes (`code`):")[1]
    )
    rows = [line for line in table.split("\n\n")[1].splitlines() if line.startswith("| `")]
    documented = {code for row in rows for code in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert documented - {"gate", "outcome"} == set(audit.CODES)


def test_an_export_whose_reader_stops_reading_ends_quietly(
    redis: Redis[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deskgate audit export ... | head`: the pipe closes under a long export; the command ends
    with 0 instead of a BrokenPipeError traceback."""
    from tests.conftest import TEST_REDIS_URL
    from tests.unit.test_settings import example_config

    fill(redis, 3000)
    example_config(monkeypatch)
    env = {**os.environ, "REDIS_URL": TEST_REDIS_URL, "DESKGATE_KEY_PREFIX": PREFIX}
    argv = ["audit", "export", "--since", "2025-12-31", "--until", "2026-12-31"]
    with subprocess.Popen(
        [sys.executable, "-m", "worker.commands.cli", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    ) as command:  # fmt: skip
        assert command.stdout is not None and command.stderr is not None
        assert command.stdout.read(100)  # then the reader goes away
        command.stdout.close()
        error = command.stderr.read().decode()
        assert command.wait(timeout=60) == 0, error
    assert "Traceback" not in error
