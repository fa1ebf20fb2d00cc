"""The audit trail: one event for every transition of a verification and every ticket write.

Events live in one Redis stream (``<prefix>:audit``), appended by the same Lua script that makes
the transition (``worker.lifecycle.store``), so no transition is recorded without its event and
no event without its transition. A stream entry holds flat strings: the event's own fields (``id``,
``event``, ``time``, ``code``) and the verification's, copied from its record when the event is
written; ``event_of`` turns one into the documented schema (docs/audit.md). Retention is the
stream's own (``audit_retention_days``, ``audit_max_events``), independent of the records'.

Every entry is sealed on a hash chain (``prev``, ``mac``: ``worker.audit.chain``), so an edit,
a deletion or a forgery in Redis is found by ``deskgate audit verify``.

In-process listeners (``listen``) see each event once it is recorded (the metrics hook); the
SIEM forwarder (``worker.audit.forwarder``) reads the stream itself.
"""

from __future__ import annotations

import csv
import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO

import structlog
from redis import Redis

from config.privacy import scrub
from worker.audit import chain as audit_chain

log = structlog.get_logger("deskgate.audit")

SCHEMA = 1
FIELDS = (
    "schema", "id", "time", "event", "desk", "ticket", "verification", "session", "requester",
    "reason", "channel", "destination", "origin", "state", "outcome", "code", "detail",
    "started_at", "sent_at", "state_at", "requester_key", "flagged_by", "actor",
    # with an identity provider (docs/idp.md): whose record, and the grants and actions
    "idp", "idp_user", "privileged", "agent", "action", "idp_request",
    # idp.bypass / idp.break_glass (docs/bypass.md): who did what to whom, how grave
    "target", "severity", "idp_event",
    "prev", "mac",
)  # fmt: skip
# Events about Deskgate itself, not a verification: who changed what it runs with (``actor``:
# the operating-system user who ran the command).
ADMIN_EVENTS = frozenset({"setup.applied", "secret.rotated"})
# Copied from the verification's record into each entry: (event field, record field).
RECORD_FIELDS = (
    ("desk", "desk"),
    ("ticket", "ticket_display"),
    ("verification", "id"),
    ("session", "interview_id"),
    ("requester", "requester_id"),
    ("reason", "reason"),
    ("channel", "channel"),
    ("destination", "destination"),
    ("origin", "origin"),
    ("state", "state"),
    ("detail", "detail"),
    ("started_at", "created_at"),
    ("sent_at", "sent_at"),
    ("state_at", "updated_at"),
    ("requester_key", "requester_key"),
    ("flagged_by", "flagged_by"),
    ("idp", "idp"),
    ("idp_user", "idp_user"),
    ("privileged", "privileged"),
)
FINAL_STATES = frozenset({"verified", "failed", "expired", "error"})
TIMES = ("time", "started_at", "sent_at", "state_at")

# Lua: the record fields an entry copies, and the chain's ``audit_ready`` / ``audit_append``
# (``worker.audit.chain``): scripts in worker/lifecycle/store.py start with this. The hard bound
# (MAXLEN ~) keeps Redis memory bounded whatever happens.
LUA = (
    "local RECORD_FIELDS = {"
    + ", ".join(f"{{'{event}', '{record}'}}" for event, record in RECORD_FIELDS)
    + "}\n"
    + audit_chain.LUA
)

# Why a verification ended in error or expired (the events' ``code``), in words for the report
# and its readers. docs/audit.md lists the same codes; a test keeps the two in step.
CODES = {
    "no_requester": "the ticket has no requester",
    "no_identity": "the requester's record lacks what names the employee to Incode",
    "no_destination": "the requester has no e-mail or phone of record to send the link to",
    "contact_too_new": "the requester's login hint, e-mail or phone of record changed too recently",
    "contact_age_unknown": "the desk could not tell when the requester's contact changed",
    "link_cap": "link cap hit: too many links for this requester or ticket within the window",
    "link_cap_long": "link cap hit: too many links for this requester within the long window",
    "not_enrolled": "Incode has no enrolled employee for the requester",
    "refused_by_incode": "Incode refused the request for a link",
    "incode_unanswered": "Incode did not confirm the request for a link in time",
    "requester_changed": "the ticket's requester changed after the link went out",
    "not_gated": "the ticket was solved or closed before it could be put on hold",
    "ticket_refused": "the helpdesk refused Deskgate's writes",
    "unrecoverable": "a gate marker Deskgate could not trust (no sealed note of its own)",
    "link_expired": "no result before the link expired",
    "review_timeout": "Incode's manual review stayed undecided past the review timeout",
    "session_reused": "Incode handed out a session already recorded for another verification",
    "session_over": "Incode handed out a session that already had a result",
    "hold_lifted": "someone took the ticket off hold before the result",
    "marker_removed": "someone removed the pending marker before the result",
    "marker_forged": "a verified marker Deskgate did not write",
    "requester_changed_after": "the requester changed after a verified outcome",
    "idp_unknown": "the identity provider has no user matching the requester",
    "idp_inactive": "the employee's account in the identity provider is not active",
    "privileged_refused": "the employee is an admin and the desk refuses helpdesk resets of admins",
    "idp_refused": "the identity provider refused Deskgate's request",
    "no_grant": "an IdP action was asked for without a verified result allowing it",
    "grant_expired": "an IdP action was asked for after the grant lapsed",
    "grant_used": "an IdP action was asked for again: one action per verified result",
    "other_requester": "an IdP action was asked for another requester than the one verified",
    "other_idp_user": "an IdP action was asked for a requester now another IdP user",
    "action_not_allowed": "an IdP action the verified reason does not allow",
    "idp_unanswered": "the identity provider did not answer an action in time (it may have acted)",
    "high": "an IdP admin action nothing explains, after a failed verification or on an admin",
    "medium": "an IdP admin action no verified ticket explains",
    "break_glass": "an IdP admin action by a configured break-glass actor",
}

Event = dict[str, Any]
Listener = Callable[[Event], None]
_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    """Call ``listener`` with every event this process records, after it is in the stream."""
    _listeners.append(listener)


def unlisten(listener: Listener) -> None:
    _listeners.remove(listener)


def notify(entry: Mapping[str, str]) -> None:
    if not _listeners:
        return
    event = event_of(entry)
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:  # a listener's bug must not fail the step that recorded the event
            log.exception("audit listener failed", audit_event=event["event"])


def head(event: str, now: float, code: str = "") -> list[str]:
    """The event's own fields, as the Lua ``audit`` takes them. The id is made once here, so
    every delivery of the event (to the SIEM, to an export) carries the same one."""
    return ["id", secrets.token_hex(16), "event", event, "time", repr(now), "code", code]


def entry(head_pairs: list[str], record: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """What the Lua ``audit`` appends, built in Python (for ticket writes)."""
    out = dict(zip(head_pairs[::2], head_pairs[1::2], strict=True))
    for name, field in RECORD_FIELDS:
        out[name] = str(record.get(field, ""))
    out.update(overrides)
    return out


def rfc3339(seconds: float) -> str:
    """``2026-11-28T19:03:14.123Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _time(raw: str) -> str | None:
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return rfc3339(seconds) if seconds > 0 else None


def event_of(fields: Mapping[str, str]) -> Event:
    """The schema's event from a stream entry: every field present, "" or null if it does not
    apply. Free text is scrubbed again here: whatever reached a record, no address leaves."""
    event: Event = {name: fields.get(name, "") for name in FIELDS}
    event["schema"] = SCHEMA
    for name in TIMES:
        event[name] = _time(fields.get(name, ""))
    if event["time"] is None:
        event["time"] = ""
    if event["started_at"] is None:
        event["started_at"] = ""
    event["detail"] = scrub(event["detail"])
    state, name = event["state"], event["event"]
    final = name == f"verification.{state}" or (
        name == "ticket.written" and event["code"] == "outcome"
    )
    event["outcome"] = state if final and state in FINAL_STATES else ""
    return event


# -- reading: export ----------------------------------------------------------------------

# The periods ``deskgate audit export`` and ``deskgate report`` take.
_RELATIVE = re.compile(r"(\d{1,5})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(text: str, now: datetime, *, end_of_day: bool = False) -> datetime:
    """``30d`` / ``12h`` / ``15m`` / ``2w`` before now, a date (its start, or with ``end_of_day``
    the start of the next day, so ``--until 2026-11-30`` includes that day) or an RFC 3339
    time."""
    relative = _RELATIVE.fullmatch(text)
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a period (30d, 12h, 15m, 2w), a date (2026-11-01) or an RFC 3339 time"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z for UTC")
    return moment.astimezone(UTC)


def stream_key(prefix: str) -> str:
    return f"{prefix}:audit"


def read(
    redis: Redis[str],
    prefix: str,
    since: datetime,
    until: datetime,
    desk: str | None = None,
    page: int = 1000,
    verifier: audit_chain.Verifier | None = None,
) -> Iterator[Event]:
    """The events appended between ``since`` and ``until`` (stream ids are the Redis server's
    clock in milliseconds), oldest first, ``page`` entries per XRANGE: memory stays constant
    however long the range. The desk filter runs here: the stream has no index per desk.
    ``verifier`` checks the chain of every entry read, whatever its desk."""
    start = str(int(since.timestamp() * 1000))
    end = str(int(until.timestamp() * 1000))
    key = stream_key(prefix)
    while True:
        batch = redis.xrange(key, start, end, count=page)
        for stream_id, fields in batch:
            if verifier is not None:
                verifier.feed(stream_id, fields)
            if desk is None or fields.get("desk") == desk:
                yield event_of(fields)
        if len(batch) < page:
            return
        start = "(" + batch[-1][0]  # exclusive: after the last one read


def csv_cell(value: Any) -> str:
    """A CSV cell. Text a spreadsheet would run as a formula gets a leading quote: details and
    ticket ids reach the trail from desks and Incode, and the file is opened by people."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # exact: a number read back is the number written
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write(events: Iterator[Event], out: TextIO, fmt: str) -> int:
    """Write ``events`` as JSON lines or CSV (the schema's fields in order); returns the count."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        for event in events:
            writer.writerow([csv_cell(event[f]) for f in FIELDS])
            count += 1
        return count
    if fmt != "jsonl":
        raise ValueError(f"format must be jsonl or csv, not {fmt!r}")
    for event in events:
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
        count += 1
    return count
