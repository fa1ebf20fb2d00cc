"""The steps of a verification, each safe to run twice and to resume after a crash.

- ``start``: a flagged ticket -> a verification -> Incode's link -> the gate on the ticket.
- ``check``: a hint (webhook or sweep) -> Incode's confirmed result -> the outcome on the ticket.
- ``poll`` / ``sweep``: find work that no push announced, and work that stalled.

Idempotency comes from three places: the store's atomic transitions (one open verification per
ticket, a state moves once), a per-verification lock (one worker advances it at a time), and the
ticket itself (the marker and the note travel in one write, so a marker already on the ticket
means the note is there too).

Ticket writes are conditional (``connectors.ticketing``): the outcome is written against the
ticket as the gate write returned it, remembered in the store, and read again only when someone
changed it since; the requester check runs on every version of the ticket the write sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.privacy import mask_destination
from config.settings import CLOCK_MARGIN_SECONDS as CLOCK_MARGIN
from config.settings import DeskConfig
from connectors.deadline import deadline, left
from connectors.http import (
    ApiError,
    AuthFailed,
    Conflict,
    Fatal,
    NotFound,
    Retriable,
    Unanswered,
)
from connectors.identity_provider import IdentityProvider, IdpUser
from connectors.incode import EmployeeNotFound, has_result
from connectors.ticketing import OPEN_MARKERS, Desk, Person, Ticket
from worker.dispatch import Dispatcher
from worker.idp.actions import Act, offer
from worker.idp.grants import Grant, Grants
from worker.idp.ledger import IdpLedger, LedgerEntry
from worker.lifecycle import FINAL, State, notes
from worker.lifecycle.caps import LinkCap, LinkCapReached
from worker.lifecycle.first_seen import FirstSeen
from worker.lifecycle.gate_watch import WATCHED, GateWatch
from worker.lifecycle.identity import (
    Identity,
    Unverifiable,
    deciding_fields,
    employee_of,
    field_name,
    identity_of,
    idp_call,
    idp_fields,
    of_record,
    value_of,
)
from worker.lifecycle.marker_audit import MarkerAudit
from worker.lifecycle.pseudonym import Pseudonyms
from worker.lifecycle.store import SessionTaken, Verification
from worker.runtime import Runtime

log = structlog.get_logger("deskgate.flow")
T = TypeVar("T")

WRITE_ATTEMPTS = 3  # re-read and write again after this many 409s at most
SWEEP_LEASE = 60  # a due verification handed to a task is not handed out again for this long
RECORD_RETRY_SECONDS = 0.5  # between tries of recording a new session while Redis is away
REFUSALS = 5  # a desk that refuses a ticket's write this many times (not for auth) is given up
MAX_BACKOFF = 3600.0
# A request-new answered with one of these may have been acted on (a server or gateway failed
# after Incode's backend took it): asking again could send a second link. 503 and 429 say
# "not now" and are asked again.
AMBIGUOUS_STATUSES = frozenset({500, 502, 504})

DECISIONS = {"verified": State.VERIFIED, "failed": State.FAILED, "review": State.REVIEW}
RESULTS = frozenset(DECISIONS.values())  # what Incode decided, for the requester it was sent to
SESSION_OVER = (
    "Incode's session for this link already had a result when Deskgate first read it, right "
    "after asking for the link: that result is older than this request and is not applied. "
    "Flag the ticket again to send a new link"
)
SESSION_REUSED = (
    "Incode answered the request for a link with a session it had already handed out for "
    "another verification, so no result of that session is applied here. The employee may "
    "still receive a link; flag the ticket again to send a new one"
)


class Busy(Exception):
    """Another worker holds this verification; try again shortly."""


class Flow:
    def __init__(self, rt: Runtime, dispatcher: Dispatcher, clock: Callable[[], float]) -> None:
        self.rt = rt
        self.store = rt.store
        self.dispatch = dispatcher
        self.clock = clock
        self.caps = LinkCap(
            rt.store.redis, rt.store.prefix, Pseudonyms(rt.settings.note_secrets, "requester")
        )
        self.first_seen = FirstSeen(
            rt.store.redis, rt.store.prefix, Pseudonyms(rt.settings.note_secrets, "first seen")
        )
        # A lock outlives the task time limit, so only a crashed holder's lock runs out; the
        # sweep resumes a vanished worker's step once it has.
        self.lock_seconds = rt.settings.task_lock_seconds
        self.resume_after = self.lock_seconds + 30
        self.seal = notes.Seal(rt.settings.note_secrets)
        self.gates = GateWatch(rt.store, self.seal, self._write)
        self.markers = MarkerAudit(rt.store, self.seal, self._write)
        # A request for a link may be in flight this long after it was started: no other
        # worker asks Incode again for the same ticket before then. Settings refuse a deadline
        # whose window would outlast the lock.
        self.ask_window = rt.settings.http_deadline_seconds + CLOCK_MARGIN
        self.grants = Grants(rt.store)
        self.ledger = IdpLedger(rt.store.redis, rt.store.prefix, rt.store.retention)
        self.act = Act(rt, self.grants, self.ledger, clock)

    def bounded(self) -> Any:
        """Every outside call a task makes ends before the task's lock runs out, so a task the
        lock no longer protects has nothing in flight (threads cannot be killed)."""
        return deadline(self.lock_seconds - CLOCK_MARGIN)

    # -- start: flagged ticket -> gate -------------------------------------------------------

    def start(self, desk_name: str, ticket_id: str, origin: str = "poll") -> None:
        """``origin``: what announced the ticket, "push" or "poll" (for the audit trail)."""
        desk = self.rt.desks.get(desk_name)
        if desk is None:
            log.warning("unknown desk", desk=desk_name)
            return
        ticket = desk.get_ticket(ticket_id)
        if ticket is None:
            log.info("ticket gone; nothing to verify")
            return
        if ticket.action_request is not None:  # an agent asks for the grant's action
            self.act.run(desk_name, desk, ticket, self._clear_action)
            return
        v = self._owner(desk_name, ticket.id)
        if v is not None and v.state not in FINAL and v.gated and ticket.marker not in OPEN_MARKERS:
            # Flagged again, and the ticket no longer shows the gate Deskgate wrote (an agent
            # took the marker off, or the desk is not the one the record is from): one request,
            # one link, so nothing new starts; say so rather than end in silence.
            log.warning(
                "ticket flagged but its open verification's gate is gone from it: no new link "
                "until that verification ends",
                verification=v.id,
                state=v.state.value,
                marker=ticket.marker or "none",
                same_requester=ticket.requester_id == v.requester_id,
            )
        if v is None:
            if ticket.reason is None:
                log.info("ticket not flagged; nothing to do")
                return
            if ticket.marker in OPEN_MARKERS:
                self._adopt(desk_name, desk, ticket, origin)
                return
            if not ticket.active:
                log.info("ticket is solved or closed; not verifying", status=ticket.status)
                return
            flagged_by = self._flagged_by(desk, ticket)
            now = self.clock()
            v, created = self.store.open(
                desk=desk_name,
                ticket_id=ticket.id,
                ticket_display=ticket.display_id,
                requester_id=ticket.requester_id or "",
                reason=ticket.reason,
                now=now,
                resume_at=now + self.resume_after,
                origin=origin,
                flagged_by=flagged_by,
            )
            if not created:
                log.info("verification already open for this ticket", verification=v.id)
            elif self.rt.settings.desks[desk_name].idp:
                self.grants.revoke(desk_name, ticket.id)  # only the latest result may act
        structlog.contextvars.bind_contextvars(verification=v.id)
        with self.store.lock(v.id, self.lock_seconds) as held:
            if not held:
                log.info("another worker is advancing this verification")
                return
            self._advance(desk, v.id, ticket)

    @staticmethod
    def _flagged_by(desk: Desk, ticket: Ticket) -> str:
        """Who flagged the ticket, for the audit trail; "" when the desk does not say, or its
        history cannot be read (Deskgate verifies the ticket all the same)."""
        try:
            return desk.flagged_by(ticket) or ""
        except (Fatal, Retriable) as exc:
            log.warning("who flagged the ticket could not be read", error=str(exc))
            return ""

    def _owner(self, desk_name: str, ticket_id: str) -> Verification | None:
        """The verification that owns the ticket: an open one, or one that ended and whose note
        is not on the ticket yet (no new request until it is). One whose note is there but that
        still holds the ticket (its step died before letting go) lets go now."""
        v = self.store.open_for(desk_name, ticket_id)
        if v is not None and v.state in FINAL and not v.unwritten:
            self.store.release(v)
            return None
        return v

    def _adopt(self, desk_name: str, desk: Desk, ticket: Ticket, origin: str) -> None:
        """The ticket is gated but Redis has no open verification for it (Redis lost data, or
        someone put the marker there): rebuild the verification from Deskgate's own sealed gate
        note and have Incode asked for the result. Anything else ends the request with a note
        saying to flag the ticket again."""
        log.warning("ticket gated but no verification recorded; recovering", marker=ticket.marker)
        now = self.clock()
        gate, why = self._gate_to_adopt(desk_name, desk, ticket, now)
        if gate is None:
            self._unrecoverable(desk_name, desk, ticket, now, why, origin)
            return
        structlog.contextvars.bind_contextvars(verification=gate.verification)
        with self.store.lock(gate.verification, self.lock_seconds) as held:
            if not held:
                raise Busy(gate.verification)
            review = ticket.marker == State.REVIEW
            adopted = self.store.adopt(
                vid=gate.verification,
                interview_id=gate.interview_id,
                state=State.REVIEW if review else State.SENT,
                now=now,
                desk=desk_name,
                ticket_id=ticket.id,
                ticket_display=ticket.display_id,
                requester_id=gate.requester_id,
                reason=gate.reason,
                expires_at=gate.expires_at,
                gated=True,
                written=State.REVIEW.value if review else "",
            )
        if isinstance(adopted, Verification):
            log.info("verification recovered from the ticket")
            self.dispatch.check_result(adopted.id, "recovered")
        elif adopted == "record" and self._finish_known(gate.verification, desk_name, ticket):
            return
        elif adopted != "open":  # "open": another task recovered or started it meanwhile
            log.warning("recovery refused: that verification or session is recorded", why=adopted)
            why = "its gate note names a verification that has ended"
            self._unrecoverable(desk_name, desk, ticket, now, why, origin)

    def _gate_to_adopt(
        self, desk_name: str, desk: Desk, ticket: Ticket, now: float
    ) -> tuple[notes.GateRecord | None, str]:
        """The gate note recovery may trust, or why there is none. Only Deskgate's own notes
        count, only the newest of them decides (an outcome written after the gate means the
        verification ended), and only a sealed gate note for this very ticket gives the ids."""
        found = desk.own_notes(ticket, notes.VERIFICATION_LINE)  # newest first
        newest = found[0] if found else ""
        vid = notes.verification_of(newest)
        if vid is None:
            return None, "Deskgate has no record of it and wrote no gate note on this ticket"
        if not notes.is_open(newest):
            return None, "the verification Deskgate last noted on this ticket has ended"
        gate = next(
            (
                g
                for g in (notes.read_gate(n, self.seal, desk_name, ticket.id) for n in found)
                if g is not None and g.verification == vid
            ),
            None,
        )
        if gate is None:
            return None, "the ticket carries no gate note sealed by Deskgate for it"
        if gate.reason != ticket.reason:
            return None, f"its gate note was for a {gate.reason}, not a {ticket.reason}"
        open_for = self.rt.settings.desks[desk_name].review_timeout_hours * 3600
        if now > gate.expires_at + open_for:
            return None, "its gate note is older than any verification can stay open"
        return gate, ""

    def _finish_known(self, vid: str, desk_name: str, ticket: Ticket) -> bool:
        """A sealed note names a verification still recorded for this ticket whose outcome is not
        on it yet: the ordinary check finishes it. False for anything else."""
        v = self.store.get(vid)
        if v is None or (v.desk, v.ticket_id) != (desk_name, ticket.id) or not v.unwritten:
            return False
        self.dispatch.check_result(vid, "recovered")
        return True

    def _unrecoverable(
        self, desk_name: str, desk: Desk, ticket: Ticket, now: float, why: str, origin: str
    ) -> None:
        """End the ticket's request with an error note (a new verification, failed at once)."""
        v, created = self.store.open(
            desk=desk_name,
            ticket_id=ticket.id,
            ticket_display=ticket.display_id,
            requester_id=ticket.requester_id or "",
            reason=ticket.reason or "request",
            now=now,
            resume_at=now + self.resume_after,
            origin=origin,
        )
        if not created:
            return
        with self.store.lock(v.id, self.lock_seconds) as held:
            if held:
                why = f"this verification cannot be recovered: {why}"
                v = self._fail(v, now, why, "unrecoverable")
                self._sync(desk, v, ticket)

    def _advance(self, desk: Desk, vid: str, ticket: Ticket, *, unread: bool = False) -> None:
        v = self.store.get(vid)
        if v is None:
            return
        if v.state == State.REQUESTED:
            v = self._request(desk, v, ticket)
        v = self._fresh(v)
        try:
            self._sync(desk, v, ticket, unread=unread)
        except NotFound:
            raise
        except Fatal as exc:
            self._refused(desk, self.store.get(v.id) or v, exc)

    def _refused(self, desk: Desk, v: Verification, exc: Fatal) -> None:
        """The desk refused a write for good (4xx). Looked at again later, less and less often;
        after ``REFUSALS`` refusals the verification ends in error (a refusal of Deskgate's
        credentials never ends it: fixing them resumes the work)."""
        now, count = self.clock(), v.refusals + 1
        self.store.update(v.id, refusals=count)
        status = f"HTTP {exc.status}" if exc.status else "an error"
        if isinstance(exc, AuthFailed) or count < REFUSALS:
            wait = min(60.0 * 2**count, MAX_BACKOFF)
            self.store.schedule(v.id, now + wait)
            log.error("the desk refused Deskgate's write", error=str(exc), refusals=count,
                      retry_in_seconds=wait)  # fmt: skip
            return
        log.error("the desk keeps refusing Deskgate's write; giving up", error=str(exc))
        self.store.unschedule(v.id)
        why = f"the desk refused Deskgate's update of this ticket {count} times ({status})"
        if v.state not in FINAL:
            v = self.store.advance(v, State.ERROR, now, detail=why, code="ticket_refused")
        try:  # one note, if the desk takes it (a refused status change may be what failed)
            ticket = desk.get_ticket(v.ticket_id)
            if ticket is not None and ticket.writable:
                desk.record(ticket, v.state, notes.outcome(v, self.seal), release=False)
                self.store.update(v.id, written=v.state.value)
                self.store.written(v, "outcome", self.clock())
        except (Fatal, Conflict, Retriable) as again:
            log.error("the error note could not be written either", error=str(again))
        self._ledger_verification(v)
        self.store.release(v)  # given up: the ticket is free for a new flag

    def _request(self, desk: Desk, v: Verification, ticket: Ticket) -> Verification:
        config = self.rt.settings.desks[v.desk]
        now = self.clock()
        asking_since = self.store.asking_since(v.desk, v.ticket_id)
        if asking_since and now < asking_since + self.ask_window:
            # An earlier request for a link for this ticket (this verification's, or one that
            # ended since) may still be on its way: asking again now could send the employee a
            # second one. Look again once it has certainly ended.
            self.store.schedule(v.id, asking_since + self.ask_window)
            log.info("an earlier request for a link may still be in flight; not asking again")
            return v
        try:
            requester = desk.get_requester(ticket)
            user = self._employee(v, requester, config)
            if user is None:
                who = identity_of(requester, config)
            else:
                who, remark = of_record(str(config.idp), user, requester, config)
                if remark:
                    self.store.update(v.id, remark=remark)
            # From here on the audit trail names whom the link is for (a keyed hash), so a SIEM
            # can group refusals and cap hits by person.
            whom = who.destination or who.login_hint
            key = self.caps.requester_key(config.channel, whom)
            if key != v.requester_key:
                self.store.update(v.id, requester_key=key)
            self._check_ages(desk, requester, config, now, user)
            # Counted before Incode is asked, so a burst cannot overshoot; a retry of this
            # verification reuses its place.
            self.caps.take(
                verification=v.id,
                desk=v.desk,
                ticket_id=v.ticket_id,
                channel=config.channel,
                destination=whom,
                config=config,
                now=now,
            )
            session = self._ask_incode(v, who, config, now)
        except Unverifiable as exc:
            return self._fail(v, now, str(exc), exc.code)
        except LinkCapReached as exc:
            return self._fail(v, now, str(exc), exc.code)
        except EmployeeNotFound:
            source = field_name(config.login_hint).replace("_", " ")
            return self._fail(
                v,
                now,
                f"Incode has no enrolled employee matching the requester's {source}; check the "
                "requester's profile, or ask the security team to enrol the employee in Incode",
                "not_enrolled",
            )
        except Unanswered:
            return self._fail(
                v,
                now,
                "Incode did not confirm the request for a link (no answer in time, or a server "
                "error). It may still send the "
                "employee a link, whose result will not be applied here; flag the ticket again "
                "to send a new one",
                "incode_unanswered",
            )
        except Fatal as exc:  # Incode's own text stays in the log, not in the ticket
            status = f"HTTP {exc.status}" if exc.status else "an error"
            why = f"Incode refused the request for a link ({status})"
            return self._fail(v, now, why, "refused_by_incode")
        expires = now + config.link_validity_minutes * 60
        if config.destination == "incode":
            destination = "the employee's contact enrolled with Incode"
        else:
            destination = mask_destination(config.channel, who.destination)
        try:
            sent = _until_recorded(
                lambda: self.store.advance(
                    v,
                    State.SENT,
                    now,
                    interview_id=session.interview_id,
                    channel=config.channel,
                    destination=destination,
                    expires_at=expires,
                    sent_at=now,
                    due=now + self.resume_after,  # the gate write comes next; resume it if we die
                    index_interview=True,
                )
            )
        except SessionTaken:
            log.error("incode handed out a session it had handed out before",
                      session=session.interview_id)  # fmt: skip
            sent = self._fail(v, now, SESSION_REUSED, "session_reused")
        else:
            log.info("verification sent", session=session.interview_id, channel=config.channel)
        # Answered and recorded: nothing is in flight. (Not before it is recorded: a worker that
        # died in between must leave the mark, or the retry would ask for a second link.)
        self.store.clear_asking(v.desk, v.ticket_id)
        return sent

    def _employee(
        self, v: Verification, person: Person | None, config: DeskConfig
    ) -> IdpUser | None:
        """With an IdP for the desk, the employee of its record the requester is (recorded on
        the verification: the ledger and the grants are by IdP user); None without one."""
        if config.idp is None:
            return None
        idp = self.rt.idps[config.idp]
        user = employee_of(idp, person, config)
        self.store.update(v.id, idp=idp.name, idp_user=user.id, privileged=user.privileged)
        return user

    def _ask_incode(self, v: Verification, who: Identity, config: DeskConfig, now: float) -> Any:
        # The mark is durable and per ticket: a worker that takes over this verification (lock
        # expired, or this one crashed), or a later verification of the same ticket, sees that a
        # request may be in flight until the deadline below has passed.
        self.store.mark_asking(v.desk, v.ticket_id, self.clock(), self.ask_window)
        try:
            with deadline(self.ask_window - CLOCK_MARGIN):
                return self.rt.incode.request_new(
                    login_hint=who.login_hint,
                    channel=config.channel,
                    destination=who.destination or None,
                    validity_minutes=config.link_validity_minutes,
                )
        except Unanswered:
            raise
        except Retriable as exc:
            if exc.status in AMBIGUOUS_STATUSES:  # a gateway's or server's failure: Incode's
                raise Unanswered(exc.system, exc.reason, exc.status) from None  # may have acted
            self.store.clear_asking(v.desk, v.ticket_id)  # never reached, or told to wait
            raise
        except ApiError:  # Incode answered with a refusal: nothing is in flight
            self.store.clear_asking(v.desk, v.ticket_id)
            raise

    def _fresh(self, v: Verification) -> Verification:
        """A result counts only if it came after the request for the link. Incode's score and
        onboarding status carry no time at which a session finished, so the session is read once
        as soon as it is recorded, before the gate: one that already has a result (Incode handed
        out an old session again) ended before this request, and the verification ends in error.
        Looked at until that read succeeds, never again after (a real result may follow)."""
        if v.state != State.SENT or v.gated or v.fresh:
            return v
        if not has_result(self.rt.incode.onboarding_status(v.interview_id)):
            self.store.update(v.id, fresh=True)
            return replace(v, fresh=True)
        log.error("incode's session already had a result when it was handed out",
                  session=v.interview_id)  # fmt: skip
        now = self.clock()
        return self.store.advance(
            v, State.ERROR, now, detail=SESSION_OVER, due=now + self.resume_after,
            code="session_over",
        )  # fmt: skip

    def _check_ages(
        self,
        desk: Desk,
        person: Person | None,
        config: DeskConfig,
        now: float,
        user: IdpUser | None = None,
    ) -> None:
        """A field added or changed recently may be the caller's, typed in "on their word": no
        link is sent until every field that decides the outcome (``deciding_fields``: the login
        hint, and the e-mail or phone the link goes to) is ``destination_min_age_hours`` old.
        A field whose changes the desk does not record is dated by Deskgate's own first-seen
        ledger (``worker.lifecycle.first_seen``)."""
        min_age = config.destination_min_age_hours * 3600
        if min_age > 0 and user is not None and config.idp is not None:
            self._check_idp_ages(self.rt.idps[config.idp], user, config, now)
            return
        if min_age <= 0 or person is None:
            return
        too_new: list[str] = []
        ready = now
        for field, role in deciding_fields(config).items():
            what = f"{field_name(field)} ({role})"
            changed = desk.changed_at(person, field)
            if changed is not None:
                seen = f"was added or changed at {notes.when(changed)}"
            else:
                value = value_of(person, field) or ""
                changed = self.first_seen.since(desk.name, person.id, field, value, now)
                seen = (
                    f"was first seen by Deskgate at {notes.when(changed)} (the desk keeps no "
                    "record of its changes that Deskgate can read)"
                )
            if now - changed < min_age:
                too_new.append(f"the requester's {what} {seen}")
                ready = max(ready, changed + min_age)
        if too_new:
            hours = config.destination_min_age_hours
            raise Unverifiable(
                "contact_too_new",
                f"{'; '.join(too_new)}: less than {hours:g} hours ago, so no link is sent. "
                "Confirm any recent change with the employee through a channel you trust; flag "
                f"the ticket again after {notes.when(ready)}",
            )

    def _check_idp_ages(
        self, idp: IdentityProvider, user: IdpUser, config: DeskConfig, now: float
    ) -> None:
        """As ``_check_ages``, dated by the IdP's own log: a field it cannot date sends no link
        (an IdP record is not Deskgate's to first-see)."""
        min_age = config.destination_min_age_hours * 3600
        too_new: list[str] = []
        ready = now
        for field, role in idp_fields(config).items():
            what = f"{field} ({role})"
            changed = idp_call(idp, partial(idp.changed_at, user, field))
            if changed is None:
                raise Unverifiable(
                    "contact_age_unknown",
                    f"{idp.name!r}'s log cannot tell when the employee's {what} last changed, so "
                    "no link is sent; confirm the employee's contact details with your identity "
                    "team",
                )
            if now - changed < min_age:
                too_new.append(f"the employee's {what} changed at {notes.when(changed)}")
                ready = max(ready, changed + min_age)
        if too_new:
            hours = config.destination_min_age_hours
            raise Unverifiable(
                "contact_too_new",
                f"{'; '.join(too_new)}: less than {hours:g} hours ago, so no link is sent. "
                "Confirm any recent change with the employee through a channel you trust; flag "
                f"the ticket again after {notes.when(ready)}",
            )

    def _fail(self, v: Verification, now: float, why: str, code: str) -> Verification:
        """End ``v`` in error; ``code`` names the reason for machines (the audit trail)."""
        failed = self.store.advance(
            v, State.ERROR, now, detail=why, due=now + self.resume_after, code=code
        )
        log.warning("verification cannot proceed", detail=why)
        return failed

    # -- writing to the ticket -------------------------------------------------------------

    def _sync(self, desk: Desk, v: Verification, ticket: Ticket, *, unread: bool = False) -> None:
        """Make the ticket show ``v``: the gate note once, then the outcome once."""
        if v.interview_id and not v.gated and v.state != State.ERROR:  # an error is only noted
            if ticket.marker != "pending":
                # Only a ticket still open is put on hold: one an agent solved or closed since
                # (seen on the re-read after a 409) is left as the agent left it.
                gate, wrote = notes.gate(v, self.seal), False

                def write_gate(t: Ticket) -> Ticket:
                    nonlocal wrote
                    if not t.active:
                        return t
                    t = desk.gate(t, gate)
                    wrote = True
                    return t

                ticket = self._write(desk, ticket, write_gate)
                if wrote:
                    self.store.written(v, "gate", self.clock())
            if ticket.marker == "pending":
                self.store.update(v.id, gated=True, ticket=v.remember(ticket))
                v = replace(v, gated=True)
                if v.state == State.SENT:  # next look: reconciliation, unless a webhook comes
                    reconcile = self.rt.settings.incode.reconcile_after_seconds
                    self.store.schedule(v.id, min(self.clock() + reconcile, v.expires_at))
                log.info("ticket gated")
            else:
                v = self._not_gated(v, ticket)
        if not v.unwritten:
            return
        v, ticket = self._write_outcome(desk, v, ticket, unread=unread)
        self.store.update(v.id, written=v.state.value, ticket=v.remember(ticket))
        if v.state in FINAL:
            self.store.unschedule(v.id)
            self._ledger_verification(v)
            self.store.release(v)  # the outcome is on the ticket: a new flag may start anew

    def _write_outcome(
        self, desk: Desk, v: Verification, ticket: Ticket, *, unread: bool
    ) -> tuple[Verification, Ticket]:
        """Put ``v``'s outcome on the ticket once. ``ticket`` may be the one Deskgate's last
        write returned, not read since: the write is conditional, so a ticket someone changed
        comes back re-read, and the requester is checked again on every version seen."""

        def write(t: Ticket) -> Ticket:
            nonlocal v
            v = self._same_requester(v, t)
            if v.gated and t.marker == v.state:
                log.info("outcome already on the ticket")
                return t
            v, _ = self._watch_gate(desk, v, t, enforce=False)  # lifted while the result came
            if not t.writable:
                log.warning("ticket closed; outcome not written", state=v.state.value)
                return t
            written = self._record_outcome(desk, v, t)
            # A desk without conditional writes (ServiceNow) takes a requester changed between
            # its re-read and this write: only the written ticket shows it. Overturned at once.
            overturned = self._same_requester(v, written)
            if overturned.state != v.state:
                v = overturned
                self.grants.revoke(v.desk, v.ticket_id)  # a result overturned grants nothing
                written = self._record_outcome(desk, v, written)
            return written

        ticket = self._write(desk, ticket, write, unread=unread)
        return v, ticket

    def _watch_gate(
        self, desk: Desk, v: Verification, ticket: Ticket, *, enforce: bool
    ) -> tuple[Verification, Ticket]:
        """Record a gate lifted before the result (``worker.lifecycle.gate_watch``); with
        ``enforce``, and the desk's ``gate_enforcement = "restore"``, put it back."""
        restore = enforce and self.rt.settings.desks[v.desk].gate_enforcement == "restore"
        return self.gates.check(desk, v, ticket, restore=restore, now=self.clock())

    def _record_outcome(self, desk: Desk, v: Verification, ticket: Ticket) -> Ticket:
        grant = self._grant_for(v)
        told = offer(v.reason, grant, self.rt.settings.desks[v.desk]) if grant else ""
        note = notes.outcome(v, self.seal, told)
        written = desk.record(ticket, v.state, note, release=v.state != State.REVIEW)
        self.store.written(v, "outcome", self.clock())
        if grant is not None:
            self.grants.open(grant)
        log.info("outcome written", state=v.state.value)
        return written

    def _grant_for(self, v: Verification) -> Grant | None:
        """The grant a VERIFIED result of a desk with an IdP opens: the actions its reason
        allows that the IdP can perform, for ``grant_minutes``; None when there are none."""
        if v.state != State.VERIFIED or not v.idp or not v.idp_user:
            return None
        idp = self.rt.idps.get(v.idp)
        reason = self.rt.settings.reasons.get(v.reason)
        if idp is None or reason is None:
            return None
        actions = tuple(a for a in reason.actions if a in idp.actions)
        if not actions:
            return None
        now = self.clock()
        return Grant(
            verification=v.id, desk=v.desk, ticket_id=v.ticket_id, requester_id=v.requester_id,
            idp=v.idp, idp_user=v.idp_user, reason=v.reason, actions=actions, opened_at=now,
            expires_at=now + self.rt.settings.grant_minutes * 60,
        )  # fmt: skip

    def _clear_action(self, desk: Desk, ticket: Ticket, note: str) -> Ticket:
        return self._write(desk, ticket, lambda t: desk.clear_action(t, note))

    def _ledger_verification(self, v: Verification) -> None:
        """The IdP ledger's entry for a verification of an IdP user that ended: its final
        state, or "refused" for an admin the desk's privileged policy turned away (that policy
        is checked before anything else about the user: ``identity.of_record``)."""
        if not v.idp or not v.idp_user or v.state not in FINAL:
            return
        config = self.rt.settings.desks.get(v.desk)
        refused = (
            v.state == State.ERROR
            and v.privileged
            and config is not None
            and config.privileged_policy == "refuse"
        )
        entry = LedgerEntry(
            kind="verification", at=v.updated_at, desk=v.desk, ticket=v.ticket_id,
            verification=v.id, reason=v.reason, state="refused" if refused else v.state.value,
        )  # fmt: skip
        self.ledger.record(v.idp, v.idp_user, entry)

    def _same_requester(self, v: Verification, ticket: Ticket) -> Verification:
        """Incode's result speaks for the person the link went to: if an agent has since put
        someone else on the ticket, the result is not applied (overturned to error)."""
        if v.state not in RESULTS or ticket.requester_id == v.requester_id:
            return v
        now = self.clock()
        why = (
            f"the ticket's requester changed after the link was sent; Incode's result "
            f"({v.state.value}) belongs to the previous requester and is not applied"
        )
        after = self.store.advance(
            v, State.ERROR, now, overturn=True, due=now + self.resume_after, detail=why,
            code="requester_changed",
        )  # fmt: skip
        if after.state == State.ERROR:
            log.warning("requester changed since the link was sent", result=v.state.value)
        return after

    def _not_gated(self, v: Verification, ticket: Ticket) -> Verification:
        """The ticket was solved or closed before its gate: the verification ends in error (the
        link already sent is moot), and the outcome step notes why if the ticket still takes
        notes, without touching its status."""
        now = self.clock()
        why = (
            "the ticket was solved or closed before it could be put on hold, so Incode's result "
            "will not be applied"
        )
        after = self.store.advance(
            v, State.ERROR, now, detail=why, due=now + self.resume_after, code="not_gated"
        )
        if after.state == State.ERROR:
            log.warning("ticket solved or closed before the gate", status=ticket.status)
        return after

    def _write(
        self,
        desk: Desk,
        ticket: Ticket,
        write: Callable[[Ticket], Ticket],
        *,
        unread: bool = False,
    ) -> Ticket:
        """Write; on a 409 (an agent edited meanwhile) re-read the ticket and write again.
        Returns the ticket as the write left it.

        ``unread``: ``ticket`` is the one Deskgate's last write returned, not read since. Which
        check a desk makes first on a stale write is not documented (a closed ticket may answer
        422 before 409), so a refusal of that write is answered the same way, once."""
        for _ in range(WRITE_ATTEMPTS):
            try:
                return write(ticket)
            except (Conflict, Fatal) as exc:
                if isinstance(exc, Fatal) and (not unread or isinstance(exc, NotFound)):
                    raise
                unread = False
                log.info("ticket changed while writing; re-reading", error=str(exc))
                fresh = desk.get_ticket(ticket.id)
                if fresh is None:
                    raise NotFound("ticket", "the ticket was deleted while being written") from None
                ticket = fresh
        raise Retriable("ticket", "the ticket kept changing while being written")

    # -- check: hint -> confirmed result -> outcome ----------------------------------------

    def check(self, vid: str, hint: str, now: float | None = None) -> None:
        structlog.contextvars.bind_contextvars(verification=vid)
        with self.store.lock(vid, self.lock_seconds) as held:
            if not held:
                raise Busy(vid)
            v = self.store.get(vid)
            if v is None:
                log.info("verification no longer recorded", hint=hint)
                return
            desk = self.rt.desks.get(v.desk)
            if desk is None:
                log.warning("verification belongs to a desk no longer configured", desk=v.desk)
                return
            structlog.contextvars.bind_contextvars(desk=v.desk, ticket=v.ticket_id)
            if v.state in FINAL and not v.unwritten and (v.gated or not v.interview_id):
                log.info("verification already finished", hint=hint)
                return
            # The ticket as the gate (or review) write left it saves a read: writes are
            # conditional, so one someone changed since is read again before it is written.
            recalled = v.recall()
            ticket = recalled or desk.get_ticket(v.ticket_id)
            if ticket is None:
                self._ticket_gone(v)
                return
            v = self._fresh(v)  # before any result is read (a step that died before its gate)
            if v.state in (State.SENT, State.REVIEW):
                v = self._confirm(v, hint, self.clock() if now is None else now)
            if v.gated and v.state in WATCHED:  # no result yet: is the gate still on the ticket?
                recalled, ticket = None, desk.get_ticket(v.ticket_id)
                if ticket is None:
                    self._ticket_gone(v)
                    return
                v, ticket = self._watch_gate(desk, v, ticket, enforce=True)
            try:
                self._advance(desk, v.id, ticket, unread=recalled is not None)
            except NotFound:
                self._ticket_gone(self.store.get(v.id) or v)

    def _confirm(self, v: Verification, hint: str, now: float) -> Verification:
        result = self.rt.incode.confirm(v.interview_id)
        target = DECISIONS.get(result.decision)
        summary = result.score_status
        if result.onboarding_status:
            summary += f", {result.onboarding_status}"
        detail = ", ".join(result.findings)
        code = ""
        if target is None or target == v.state:
            # Undecided: the link expires at its time, a manual review after its timeout.
            hours = self.rt.settings.desks[v.desk].review_timeout_hours
            ends = v.expires_at if v.state == State.SENT else v.updated_at + hours * 3600
            if now >= ends:
                target = State.EXPIRED
                code = "review_timeout" if v.state == State.REVIEW else "link_expired"
                detail = (
                    f"Incode's manual review did not decide within {hours:g} hours"
                    if v.state == State.REVIEW
                    else ""
                )
            else:
                reconcile = self.rt.settings.incode.reconcile_after_seconds
                self.store.schedule(v.id, min(now + reconcile, ends))
                log.info("no result yet", hint=hint, decision=result.decision)
                return v
        after = self.store.advance(
            v, target, now, due=now + self.resume_after, result=summary, detail=detail, code=code
        )
        if after.state == target:
            log.info("result confirmed", state=target.value, hint=hint)
        return after

    def _ticket_gone(self, v: Verification) -> None:
        log.warning("ticket deleted; verification abandoned", state=v.state.value)
        self.store.abandon(v, self.clock())

    # -- poll and sweep ----------------------------------------------------------------------

    def poll(self, desk_name: str, recover: bool = False) -> int:
        """Hand flagged tickets to ``start``; with ``recover``, gated tickets Redis forgot."""
        desk = self.rt.desks[desk_name]
        scan = f"{desk_name}:gated" if recover else desk_name
        flagged, cursor = desk.find_flagged(self.store.cursor(scan), gated=recover)
        self.store.set_cursor(scan, cursor)
        # Tickets with an open verification are in hand; the rest are new, or lost by Redis.
        found = [t for t in flagged if self._owner(desk_name, t) is None]
        for ticket_id in found:
            self.dispatch.start_verification(desk_name, ticket_id, "poll")
        if found:
            log.info("poll found flagged tickets", count=len(found))
        return len(found)

    def audit_markers(self, desk_name: str) -> int:
        """Overturn verified markers Deskgate cannot prove it wrote
        (``worker.lifecycle.marker_audit``)."""
        return self.markers.run(desk_name, self.rt.desks[desk_name], self.clock())

    def sweep(self, now: float | None = None) -> int:
        self.store.record_sweep(self.clock())  # beat's heartbeat: the real time, never ``now``
        now = self.clock() if now is None else now
        due = self.store.due(now)
        for vid in due:
            self.store.schedule(vid, now + SWEEP_LEASE)
            self.dispatch.check_result(vid, "sweep", now)
        if due:
            log.info("sweep handed out due verifications", count=len(due))
        self.grants.expire_due(now)
        self.store.trim_audit(now)
        return len(due)


def _until_recorded(write: Callable[[], T]) -> T:
    """``write`` (idempotent), tried again while Redis cannot be reached, until the task's deadline.

    For the one write whose loss costs a second link: the session Incode has just created lives
    only in this task until it is recorded. Failing here would leave the retry no choice but to
    ask Incode again; a Sentinel failover or a managed service's takes seconds (a demoted
    primary answers READONLY meanwhile)."""
    said = False
    while True:
        try:
            return write()
        except (RedisConnectionError, RedisTimeoutError, ReadOnlyError) as exc:
            remaining = left()
            if remaining is None or remaining < RECORD_RETRY_SECONDS + CLOCK_MARGIN:
                raise
            if not said:  # once, not every half second
                log.warning("redis unavailable; recording incode's new session again until "
                            "it answers", error=str(exc))  # fmt: skip
                said = True
            time.sleep(RECORD_RETRY_SECONDS)
