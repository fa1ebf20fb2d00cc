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
    changed_fields: dict[str, float | None] = field(default_factory=dict)  # overrides, by field
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
        return self.changed_fields.get(field, self.changed)

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

    def requested_by(self, ticket: Ticket, action: str) -> str | None:
        return None

    def clear_action(self, ticket: Ticket, note: str) -> Ticket:
        return self._write(ticket, note, action_request=None)

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
    hand_out: str | None = None  # the interviewId of the next answers (default: a new one each)
    status: str = "UNKNOWN"  # the onboarding status every session reads as
    status_reads: int = 0

    def request_new(self, **request: Any) -> Session:
        self.asked.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        return Session(self.hand_out or f"{len(self.asked):024x}", "https://link.invalid")

    def onboarding_status(self, interview_id: str) -> str | None:
        self.status_reads += 1
        return self.status

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

    def desk_verification(self, ticket_id: str) -> str:
        """The last verification of the ticket the audit trail names (its display id: #id)."""
        events = self.store.redis.xrange(self.store.audit_key)
        return next(
            str(e["verification"]) for _, e in reversed(events) if e["ticket"] == f"#{ticket_id}"
        )


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


def reflag(w: World, ticket_id: str = "42") -> None:
    """The agent flags the ticket again (the earlier outcome consumed the flag)."""
    w.desk.tickets[ticket_id] = replace(w.desk.tickets[ticket_id], reason="MFA reset")
    w.flow.start(DESK, ticket_id)


def test_a_field_the_desk_cannot_date_is_dated_from_when_deskgate_first_saw_it(w: World) -> None:
    """The first time Deskgate sees a value it cannot know its age: the clock starts then."""
    w.desk.add("42")
    w.desk.changed = None
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    note = w.note()
    assert "e-mail address (which names the employee to Incode and receives the link) was " \
        "first seen by Deskgate at" in note  # fmt: skip
    assert "flag the ticket again after 08:00 UTC on 2027-01-18" in note  # START + 72 h
    assert "jane@acme.test" not in note
    w.advance(71 * HOUR)
    reflag(w)
    assert w.incode.asked == [] and "first seen by Deskgate at" in w.note()
    w.advance(1 * HOUR)
    reflag(w)
    assert len(w.incode.asked) == 1  # 72 hours after Deskgate first saw it


def test_a_login_hint_changed_recently_gets_no_link_though_the_destination_is_old(
    redis: Redis[str],
) -> None:
    """A caller's long-standing profile with the victim's employee number added to it: the link
    would go to the caller's old address, and Incode would match the victim's enrolment."""
    w = world(redis, login_hint="external_id")
    w.desk.add("42", email="caller@acme.test")
    w.desk.people["u42"] = replace(w.desk.people["u42"], external_id="E-1001")
    w.desk.changed_fields["external_id"] = START - 2 * HOUR
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert w.desk.asked_about == ["external_id", "email"]
    note = w.note()
    assert "external id (which names the employee to Incode) was added or changed at" in note
    assert "flag the ticket again after 06:00 UTC on 2027-01-18" in note  # changed + 72 h
    assert "E-1001" not in note and "caller@acme.test" not in note


def test_a_login_hint_the_desk_cannot_date_waits_for_the_first_seen_ledger(
    redis: Redis[str],
) -> None:
    """With the link going to the desk's contact, a user field (no history in Zendesk) must still
    be old enough, by Deskgate's own ledger; a changed value restarts the clock."""
    w = world(redis, login_hint="user_field:employee_id")
    w.desk.add("42")
    w.desk.people["u42"] = replace(w.desk.people["u42"], fields={"employee_id": "1001"})
    w.desk.changed_fields["user_field:employee_id"] = None
    w.flow.start(DESK, "42")
    assert w.incode.asked == []
    assert "user field employee_id (which names the employee to Incode) was first seen" in w.note()
    w.advance(72 * HOUR)
    w.desk.people["u42"] = replace(w.desk.people["u42"], fields={"employee_id": "2002"})
    reflag(w)
    assert w.incode.asked == []  # another value: its clock starts now
    w.advance(72 * HOUR)
    reflag(w)
    [asked] = w.incode.asked
    assert asked["login_hint"] == "2002"


def test_both_deciding_fields_too_new_are_named_with_the_later_time(redis: Redis[str]) -> None:
    w = world(redis, login_hint="external_id")
    w.desk.add("42")
    w.desk.people["u42"] = replace(w.desk.people["u42"], external_id="E-1001")
    w.desk.changed_fields.update(external_id=START - 2 * HOUR, email=START - 1 * HOUR)
    w.flow.start(DESK, "42")
    note = w.note()
    assert "external id (which names the employee to Incode) was added" in note
    assert "e-mail address (which receives the link) was added" in note
    assert "flag the ticket again after 07:00 UTC on 2027-01-18" in note  # the later of the two


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
    assert "external id (which names the employee to Incode) was added or changed" in w.note()


def test_the_verified_note_says_what_was_proven_and_where_the_work_may_go(w: World) -> None:
    """A pass proves the employee of record did the check at their contact of record, not that
    the caller on the line is them: the reset goes to that contact only."""
    vid = started(w)
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    note = w.note()
    assert note.startswith("Identity VERIFIED")
    assert "the employee of record completed Incode's identity check through the link sent " \
        "to j***@acme.test" in note  # fmt: skip
    assert "Deliver the MFA reset only through that employee's contact of record, never to " \
        "the caller on the line" in note  # fmt: skip
    assert "proceed" not in note and "jane@acme.test" not in note


# -- one request for a link at a time ------------------------------------------------------


def test_no_second_request_while_an_earlier_one_may_be_in_flight(w: World) -> None:
    w.desk.add("42")
    v, _ = w.store.open(desk=DESK, ticket_id="42", ticket_display="#42", requester_id="u42",
                        reason="MFA reset", now=START, resume_at=START)  # fmt: skip
    w.store.mark_asking(DESK, "42", START - 1, w.flow.ask_window)  # another worker asked
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


def test_an_error_note_the_desk_did_not_take_is_retried_without_a_second_link(w: World) -> None:
    """Request-new cut off (the verification ends in error), then the error note's write meets
    one 503: the retried task must finish that verification, not open a new one and ask again."""
    w.desk.add("42")
    w.incode.fail_with = Unanswered("incode", "the call's overall deadline passed")
    w.desk.refuse = Retriable("zendesk", "HTTP 503", 503)
    with pytest.raises(Retriable):
        w.flow.start(DESK, "42")
    w.incode.fail_with = w.desk.refuse = None
    w.flow.start(DESK, "42")  # the task's retry: the ticket is still flagged and unmarked
    assert len(w.incode.asked) == 1
    assert w.desk.tickets["42"].marker == "error"
    assert "did not confirm the request for a link" in w.note()
    assert w.store.open_for(DESK, "42") is None  # its note is written: the ticket is free


def test_a_new_verification_waits_out_the_request_an_ended_one_may_still_have_in_flight(
    w: World,
) -> None:
    """The 'asking since' mark belongs to the ticket: an agent flagging again right after the
    error note must not get a second link while the unanswered request may still be answered."""
    w.desk.add("42")
    w.incode.fail_with = Unanswered("incode", "the call's overall deadline passed")
    w.flow.start(DESK, "42")
    assert w.desk.tickets["42"].marker == "error"
    w.incode.fail_with = None
    w.desk.tickets["42"] = replace(w.desk.tickets["42"], reason="MFA reset")  # flagged again
    w.flow.start(DESK, "42")
    assert len(w.incode.asked) == 1
    v = w.store.open_for(DESK, "42")
    assert v is not None and v.state == State.REQUESTED
    assert w.store.due(START + w.flow.ask_window) == [v.id]
    w.advance(w.flow.ask_window)
    w.flow.check(v.id, "sweep")
    assert len(w.incode.asked) == 2 and w.desk.tickets["42"].marker == "pending"


def test_a_ticket_whose_last_note_is_written_is_free_even_if_its_step_died_before_letting_go(
    w: World,
) -> None:
    vid = started(w)
    w.incode.decision = "failed"
    w.flow.check(vid, "SESSION_FAILED")
    failed = w.store.get(vid)
    assert failed is not None and w.desk.tickets["42"].marker == "failed"
    w.store.redis.set(w.store._key("open", DESK, "42"), vid)  # the hold, as a crash leaves it
    w.desk.tickets["42"] = replace(w.desk.tickets["42"], reason="MFA reset")  # flagged again
    assert w.flow.poll(DESK) == 1  # the poller hands it out
    w.flow.start(DESK, "42")
    assert len(w.incode.asked) == 2 and w.desk.tickets["42"].marker == "pending"


def test_a_session_incode_hands_out_a_second_time_is_refused_and_its_pass_never_applied(
    w: World,
) -> None:
    first = started(w, "1")
    w.incode.decision = "verified"
    w.flow.check(first, "SESSION_SUCCEEDED")
    old = w.store.get(first)
    assert old is not None and w.desk.tickets["1"].marker == "verified"
    w.incode.hand_out = old.interview_id  # Incode answers the next request with that session
    w.desk.add("2")
    w.flow.start(DESK, "2")
    assert w.desk.tickets["2"].marker == "error"
    assert "a session it had already handed out" in w.note("2")
    assert not any(n.startswith("Identity VERIFIED") for _, n in w.desk.notes["2"])
    assert w.store.session(old.interview_id) == first  # the session stays the first one's
    refused = w.store.get(w.desk_verification("2"))
    assert refused is not None and refused.interview_id == "" and refused.state == State.ERROR
    codes = [e["code"] for _, e in w.store.redis.xrange(w.store.audit_key) if e["ticket"] == "#2"]
    assert "session_reused" in codes


def test_a_session_that_already_has_a_result_when_handed_out_is_never_applied(w: World) -> None:
    """Incode hands out a session Deskgate has no record of (its index expired, say) that
    finished long ago: its old pass must not verify this ticket."""
    w.desk.add("42")
    w.incode.status, w.incode.decision = "ONBOARDING_FINISHED", "verified"
    w.flow.start(DESK, "42")
    assert w.desk.tickets["42"].marker == "error"
    assert "already had a result when Deskgate first read it" in w.note()
    assert len(w.desk.notes["42"]) == 1  # no gate: the ticket was never held for it
    v = w.store.get(w.desk_verification("42"))
    assert v is not None and v.state == State.ERROR
    w.flow.check(v.id, "SESSION_SUCCEEDED")  # its webhook changes nothing
    assert w.desk.tickets["42"].marker == "error" and len(w.desk.notes["42"]) == 1


def test_a_session_is_read_for_an_old_result_once_before_the_gate_and_never_again(
    w: World,
) -> None:
    w.desk.refuse_gate = Retriable("zendesk", "HTTP 503", 503)
    w.desk.add("42")
    with pytest.raises(Retriable):
        w.flow.start(DESK, "42")
    w.desk.refuse_gate = None
    w.incode.status = "ONBOARDING_FINISHED"  # the employee finished meanwhile: a real result
    w.incode.decision = "verified"
    v = w.store.get(w.desk_verification("42"))
    assert v is not None
    w.flow.check(v.id, "SESSION_SUCCEEDED")
    assert w.desk.tickets["42"].marker == "verified"
    assert w.incode.status_reads == 1


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


def test_a_requester_changed_inside_the_outcome_write_is_overturned_at_once(w: World) -> None:
    """A desk without conditional writes (ServiceNow) takes an agent's change of requester made
    between its re-read and Deskgate's write: only the ticket the write returns shows it."""
    vid = started(w)
    record = w.desk.record

    def caller_changed_meanwhile(
        ticket: Ticket, marker: str, note: str, *, release: bool
    ) -> Ticket:
        written = record(ticket, marker, note, release=release)
        if marker == "verified":  # the write landed on a ticket whose requester just changed
            written = replace(written, requester_id="u99")
            w.desk.tickets[ticket.id] = written
        return written

    w.desk.record = caller_changed_meanwhile  # type: ignore[method-assign]
    w.incode.decision = "verified"
    w.flow.check(vid, "SESSION_SUCCEEDED")
    assert w.desk.tickets["42"].marker == "error"
    assert "requester changed after the link was sent" in w.note()
    v = w.store.get(vid)
    assert v is not None and v.state == State.ERROR


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
