"""``Flow`` driven directly: an in-memory desk with conditional writes, a scripted Incode, the
lifecycle store on a real Redis and an injected clock, so hours pass in a test."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from redis import Redis
from structlog.testing import capture_logs

from connectors.http import AuthFailed, Conflict, Fatal, NotFound, Retriable, Unanswered
from connectors.incode import Result, Session
from connectors.registry import SETTINGS as Settings
from connectors.ticketing import OPEN_MARKERS, Person, Ticket
from tests.conftest import settings_data
from worker.flow import REFUSALS, Flow
from worker.lifecycle import State
from worker.runtime import Runtime
from worker.store import Store

DESK = "acme_zendesk"
HOUR = 3600.0
START = 1_800_000_000.0


@dataclass
class MemoryDesk:
    """A desk in memory: writes are conditional on the version, as Safe Update makes them."""

    name: str = DESK
    tickets: dict[str, Ticket] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)
    notes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (author, text)
    changed: float | None = START - 30 * 24 * HOUR  # when any field of a person last changed
    asked_about: list[str] = field(default_factory=list)  # which fields' age was asked
    refuse: Exception | None = None  # raised by every write while set
    refuse_gate: Exception | None = None  # raised by the gate write only

    def add(self, ticket_id: str, email: str = "jane@acme.test") -> Ticket:
        person = Person(id=f"u{ticket_id}", email=email, phone="+14155550134")
        self.people[person.id] = person
        ticket = Ticket(ticket_id, f"#{ticket_id}", person.id, "MFA reset", None, True, True,
                        "open", "1")  # fmt: skip
        self.tickets[ticket_id] = ticket
        return ticket

    def find_flagged(self, cursor: str | None, *, gated: bool) -> tuple[list[str], str | None]:
        return [t.id for t in self.tickets.values() if (t.marker in OPEN_MARKERS) == gated], None

    def get_ticket(self, ticket_id: str) -> Ticket | None:
        return self.tickets.get(ticket_id)

    def own_notes(self, ticket: Ticket, text: str) -> list[str]:
        found = self.notes.get(ticket.id, [])
        return [n for author, n in reversed(found) if author == "deskgate" and text in n]

    def get_requester(self, ticket: Ticket) -> Person | None:
        return self.people.get(ticket.requester_id or "")

    def changed_at(self, person: Person, field: str) -> float | None:
        self.asked_about.append(field)
        return self.changed

    def _write(self, ticket: Ticket, note: str, **change: Any) -> Ticket:
        current = self.tickets.get(ticket.id)
        if current is None:
            raise NotFound("desk", "gone", 404)
        if current.version != ticket.version:
            raise Conflict("desk", "changed", 409)
        if self.refuse is not None:
            raise self.refuse
        self.notes.setdefault(ticket.id, []).append(("deskgate", note))
        written = replace(current, version=str(int(current.version) + 1), **change)
        self.tickets[ticket.id] = written
        return written

    def gate(self, ticket: Ticket, note: str) -> Ticket:
        if self.refuse_gate is not None:
            raise self.refuse_gate
        return self._write(ticket, note, marker="pending", status="hold")

    def record(self, ticket: Ticket, marker: str, note: str, *, release: bool) -> Ticket:
        status = "open" if release else ticket.status
        reason = ticket.reason if marker in OPEN_MARKERS else None  # the trigger is consumed
        return self._write(ticket, note, marker=marker, status=status, reason=reason)

    def close(self) -> None:
        pass


@dataclass
class ScriptedIncode:
    decision: str = "pending"
    asked: list[dict[str, Any]] = field(default_factory=list)
    fail_with: Exception | None = None

    def request_new(self, **request: Any) -> Session:
        self.asked.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        return Session(f"{len(self.asked):024x}", "https://link.invalid")

    def confirm(self, interview_id: str) -> Result:
        return Result(self.decision, "UNKNOWN", None, ())  # type: ignore[arg-type]


@dataclass
class Queue:
    """What the flow hands to the worker, in order."""

    sent: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def start_verification(self, desk: str, ticket_id: str, origin: str = "poll") -> None:
        self.sent.append(("start", (desk, ticket_id)))

    def check_result(self, vid: str, hint: str, now: float | None = None) -> None:
        self.sent.append(("check", (vid, hint)))

    def poll_desk(self, desk: str, recover: bool = False) -> None:
        self.sent.append(("poll", (desk, recover)))


@dataclass
class World:
    flow: Flow
    desk: MemoryDesk
    incode: ScriptedIncode
    store: Store
    queue: Queue
    clock: list[float]

    def advance(self, seconds: float) -> None:
        self.clock[0] += seconds

    def note(self, ticket_id: str = "42") -> str:
        return self.desk.notes[ticket_id][-1][1]


def world(redis: Redis[str], **desk_config: Any) -> World:
    data = settings_data()
    data["desks"]["acme_zendesk"].update(desk_config)
    settings = Settings(**data)
    store = Store(redis, settings.key_prefix, 3600)
    desk, incode, queue, clock = MemoryDesk(), ScriptedIncode(), Queue(), [START]
    rt = Runtime(settings, redis, store, incode, {DESK: desk}, 0)  # type: ignore[arg-type]
    flow = Flow(rt, queue, lambda: clock[0])  # type: ignore[arg-type]
    return World(flow, desk, incode, store, queue, clock)


@pytest.fixture
def w(redis: Redis[str]) -> World:
    return world(redis)


def started(w: World, ticket_id: str = "42") -> str:
    w.desk.add(ticket_id)
    w.flow.start(DESK, ticket_id)
    v = w.store.open_for(DESK, ticket_id)
    assert v is not None and v.state == State.SENT
    return v.id


# -- the link goes to a contact of record that is not new -----------------------------------


def test_a_contact_changed_recently_gets_no_link_and_the_note_says_until_when(w: World) -> None:
    w.desk.add("42")
    w.desk.changed = START - 2 * HOUR  # an agent typed the caller's address in
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert w.desk.tickets["42"].marker == "error"
    note = w.note()
    assert "less than 72 hours ago" in note and "flag the ticket again after" in note
    assert "jane@acme.test" not in note


def test_a_contact_whose_age_the_desk_cannot_tell_gets_no_link(w: World) -> None:
    w.desk.add("42")
    w.desk.changed = None
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert "cannot tell when the requester's e-mail address" in w.note()


def test_destination_incode_sends_only_the_login_hint_and_the_channel(redis: Redis[str]) -> None:
    w = world(redis, destination="incode")
    w.desk.add("42")
    w.flow.start(DESK, "42")
    [asked] = w.incode.asked
    assert asked["destination"] is None and asked["login_hint"] == "jane@acme.test"
    assert "the employee's contact enrolled with Incode" in w.note()
    assert w.desk.asked_about == ["email"]  # the login hint's age: it names who gets the link


def test_destination_incode_checks_the_age_of_what_names_the_employee(redis: Redis[str]) -> None:
    """With Incode delivering to its own record, whoever can change the login hint chooses the
    employee Incode sends to: a login hint changed just now gets no link."""
    w = world(redis, destination="incode", login_hint="external_id")
    w.desk.add("42")
    w.desk.people["u42"] = replace(w.desk.people["u42"], external_id="E-1")
    w.desk.changed = START - 60
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert w.desk.asked_about == ["external_id"]
    assert "external id, which names the employee to Incode, was added or changed" in w.note()


# -- one request for a link at a time ------------------------------------------------------


def test_no_second_request_while_an_earlier_one_may_be_in_flight(w: World) -> None:
    w.desk.add("42")
    v, _ = w.store.open(desk=DESK, ticket_id="42", ticket_display="#42", requester_id="u42",
                        reason="MFA reset", now=START, resume_at=START)  # fmt: skip
    w.store.update(v.id, asking_since=START - 1)  # another worker asked a second ago
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert w.store.due(START + w.flow.ask_window) == [v.id]  # looked at again after the window
    w.advance(w.flow.ask_window)
    w.flow.start(DESK, "42")  # the earlier call has certainly ended (crashed worker): ask
    assert len(w.incode.asked) == 1


def test_an_unanswered_request_is_never_repeated(w: World) -> None:
    w.desk.add("42")
    w.incode.fail_with = Unanswered("incode", "timed out on POST /omni/b2b/onboarding/request-new")
    w.flow.start(DESK, "42")
    assert len(w.incode.asked) == 1
    assert w.desk.tickets["42"].marker == "error"
    assert "did not confirm the request for a link" in w.note()
    w.advance(HOUR)
    w.flow.start(DESK, "42")  # flagged again: that is a new verification, a new link
    assert len(w.incode.asked) == 1  # the trigger is consumed: nothing starts by itself


def test_incodes_own_error_text_stays_out_of_the_note(w: World) -> None:
    w.desk.add("42")
    w.incode.fail_with = Fatal("incode", "jane.doe@acme.test +1 415 555 0134 is invalid", 400)
    w.flow.start(DESK, "42")
    note = w.note()
    assert "Incode refused the request for a link (HTTP 400)" in note
    assert "jane.doe" not in note and "0134" not in note


# -- a manual review ends ------------------------------------------------------------------


def test_a_manual_review_that_never_decides_expires_after_the_review_timeout(w: World) -> None:
    vid = started(w)
    w.incode.decision = "review"
    w.flow.check(vid, "SESSION_PENDING_REVIEW")
    assert w.desk.tickets["42"].marker == "review"
    w.incode.decision = "pending"  # no reviewer decides
    w.advance(71 * HOUR)
    w.flow.check(vid, "sweep")
    assert w.desk.tickets["42"].marker == "review"
    assert w.store.due(w.clock[0] + HOUR) == [vid]  # looked at again by the timeout
    w.advance(HOUR)
    w.flow.check(vid, "sweep")
    assert w.desk.tickets["42"].marker == "expired"
    assert "manual review did not decide within 72 hours" in w.note()


# -- a desk that refuses for good ----------------------------------------------------------


def test_a_refused_write_backs_off_then_gives_up_with_a_note(redis: Redis[str]) -> None:
    w = world(redis, link_validity_minutes=7 * 24 * 60)
    w.desk.add("42")
    w.desk.refuse_gate = Fatal("zendesk", "Status: hold is not enabled", 422)
    w.flow.start(DESK, "42")  # the link went out; putting the ticket on hold is refused
    v = w.store.open_for(DESK, "42")
    assert v is not None
    waits = []
    for _ in range(REFUSALS - 1):
        [(_, due)] = w.store.redis.zrange(w.store._key("due"), 0, -1, withscores=True)
        waits.append(due - w.clock[0])
        w.clock[0] = due
        w.flow.check(v.id, "sweep")
    assert waits == sorted(waits) and waits[0] < waits[-1]  # less and less often
    final = w.store.get(v.id)
    assert final is not None and final.state == State.ERROR
    assert w.desk.tickets["42"].marker == "error"  # a plain note was still taken
    assert "refused Deskgate's update of this ticket 5 times (HTTP 422)" in w.note()
    assert w.store.due(w.clock[0] + 10 * HOUR) == []  # not looked at again


def test_refused_credentials_are_retried_however_long_it_takes(redis: Redis[str]) -> None:
    w = world(redis, link_validity_minutes=7 * 24 * 60)
    w.desk.add("42")
    w.desk.refuse = AuthFailed("zendesk", "Couldn't authenticate you", 401)
    w.flow.start(DESK, "42")
    v = w.store.open_for(DESK, "42")
    assert v is not None
    for _ in range(REFUSALS + 3):
        w.advance(2 * HOUR)
        w.flow.check(v.id, "sweep")
    assert w.store.due(w.clock[0] + HOUR) == [v.id]  # still on the list, an hour apart at most
    w.desk.refuse = None  # credentials fixed
    w.advance(HOUR)
    w.flow.check(v.id, "sweep")
    assert w.desk.tickets["42"].marker == "pending"


# -- recovery after Redis lost the record ----------------------------------------------------


def test_a_lost_verification_is_recovered_from_deskgates_own_sealed_gate_note(
    w: World, redis: Redis[str]
) -> None:
    vid = started(w)
    before = w.store.get(vid)
    assert before is not None
    redis.flushdb()  # Redis lost everything
    w.flow.start(DESK, "42")  # the rare scan of gated tickets finds the ticket
    v = w.store.get(vid)
    assert v is not None and v.state == State.SENT and v.interview_id == before.interview_id
    assert v.requester_id == "u42" and v.gated
    assert w.queue.sent == [("check", (vid, "recovered"))]  # Incode is asked for the result
    assert w.incode.asked[1:] == []  # and no second link


def test_a_gate_note_by_anyone_else_is_not_recovered(w: World, redis: Redis[str]) -> None:
    started(w)
    [(_, genuine)] = w.desk.notes["42"]
    redis.flushdb()
    w.desk.notes["42"] = [("an.agent", genuine)]  # the same words, by someone else
    w.flow.start(DESK, "42")
    assert w.desk.tickets["42"].marker == "error"
    assert "this verification cannot be recovered" in w.note()
    assert w.queue.sent == []


def test_a_finished_verification_is_not_adopted_again(w: World, redis: Redis[str]) -> None:
    vid = started(w)
    w.incode.decision = "verified"
    w.flow.check(vid, "SESSION_SUCCEEDED")
    assert w.desk.tickets["42"].marker == "verified"
    gate = w.desk.notes["42"][0]
    # Someone puts the marker and the trigger back, and Deskgate's own gate note on top.
    w.desk.tickets["42"] = replace(w.desk.tickets["42"], marker="pending", reason="MFA reset")
    w.desk.notes["42"].append(gate)
    w.flow.start(DESK, "42")
    assert w.desk.tickets["42"].marker == "error"  # the record exists and has ended
    assert sum("VERIFIED" in n for _, n in w.desk.notes["42"]) == 1


# -- writes: conflicts, the requester, expiry ---------------------------------------------


def test_an_agents_edit_during_the_gate_write_is_reread_and_the_gate_written_once(
    w: World,
) -> None:
    w.desk.add("42")
    gate = w.desk.gate
    edits = iter([True])

    def edited_meanwhile(ticket: Ticket, note: str) -> Ticket:
        if next(edits, False):  # an agent retitles the ticket just before Deskgate's write
            current = w.desk.tickets[ticket.id]
            w.desk.tickets[ticket.id] = replace(current, version=str(int(current.version) + 1))
        return gate(ticket, note)

    w.desk.gate = edited_meanwhile  # type: ignore[method-assign]
    w.flow.start(DESK, "42")
    assert w.desk.tickets["42"].marker == "pending"
    assert len(w.desk.notes["42"]) == 1


def test_a_result_for_a_requester_replaced_since_the_link_is_not_applied(w: World) -> None:
    vid = started(w)
    ticket = w.desk.tickets["42"]
    w.desk.tickets["42"] = replace(ticket, requester_id="u99", version=str(int(ticket.version) + 1))
    w.incode.decision = "verified"
    w.flow.check(vid, "SESSION_SUCCEEDED")
    assert w.desk.tickets["42"].marker == "error"
    assert "requester changed after the link was sent" in w.note()


def test_no_result_by_the_links_expiry_ends_as_expired(w: World) -> None:
    vid = started(w)
    w.advance(29 * 60)
    w.flow.check(vid, "sweep")
    assert w.desk.tickets["42"].marker == "pending"
    w.advance(60)
    w.flow.check(vid, "sweep")
    assert w.desk.tickets["42"].marker == "expired"
    assert "Identity verification EXPIRED: no result by" in w.note()


def test_a_recovered_gate_applies_only_to_the_reason_it_was_sealed_for(
    w: World, redis: Redis[str]
) -> None:
    started(w)
    redis.flushdb()
    # The trigger is swapped for another request while Redis has no record.
    w.desk.tickets["42"] = replace(w.desk.tickets["42"], reason="admin rights grant")
    w.flow.start(DESK, "42")
    assert w.desk.tickets["42"].marker == "error"
    assert "its gate note was for a MFA reset, not a admin rights grant" in w.note()
    assert w.queue.sent == []


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_or_gateway_failure_on_request_new_is_never_asked_again(
    w: World, status: int
) -> None:
    w.desk.add("42")
    w.incode.fail_with = Retriable("incode", "Bad Gateway", status)
    w.flow.start(DESK, "42")
    assert len(w.incode.asked) == 1
    assert "did not confirm the request for a link" in w.note()


def test_503_on_request_new_is_asked_again(w: World) -> None:
    w.desk.add("42")
    w.incode.fail_with = Retriable("incode", "Service Unavailable", 503)
    with pytest.raises(Retriable):  # the task retries
        w.flow.start(DESK, "42")
    w.incode.fail_with = None
    w.flow.start(DESK, "42")  # at once: nothing is in flight
    assert len(w.incode.asked) == 2 and w.desk.tickets["42"].marker == "pending"


def test_each_sweep_records_beats_heartbeat_at_the_real_time(w: World, redis: Redis[str]) -> None:
    assert w.store.last_sweep() is None
    w.flow.sweep(now=START + 10 * HOUR)  # a sweep told another time still ran now
    assert w.store.last_sweep() == START
    assert 0 < redis.ttl("dgtest:heartbeat:sweep") <= 86400  # no key without a TTL


def test_a_flagged_ticket_without_the_gate_of_its_open_verification_is_logged_not_ignored(
    w: World,
) -> None:
    """Ticket 1 of a second ``deskgate dev`` run (or a ticket whose gate marker an agent took
    off) met an open, gated verification and the request ended at once, without a word."""
    vid = started(w)
    gated = w.desk.tickets["42"]
    w.desk.tickets["42"] = replace(gated, marker=None, status="open", requester_id="u-other")
    with capture_logs() as logged:
        w.flow.start(DESK, "42")
    assert len(w.incode.asked) == 1  # still one request, one link
    [line] = [e for e in logged if e["log_level"] == "warning"]
    assert "gate is gone" in line["event"] and line["verification"] == vid
    assert line["marker"] == "none" and line["same_requester"] is False
