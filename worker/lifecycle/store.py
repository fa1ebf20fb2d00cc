"""The lifecycle store in Redis: one hash per verification, indexes, and atomic transitions.

Keys (``p`` is the configured prefix):

- ``p:v:<id>``               hash: the verification (see ``Verification``)
- ``p:open:<desk>:<ticket>``  the verification that owns a ticket: at most one, set atomically;
                              kept after it ends until its outcome is on the ticket (``release``)
- ``p:asking:<desk>:<ticket>`` when Incode was last asked for a link for the ticket: a request
                              may be in flight until the ask window after it has passed; it
                              outlives the verification that asked, and expires with the window
- ``p:iv:<interviewId>``      Incode session -> verification
- ``p:due``                   sorted set: when the sweep must next look at a verification
                              (resume a stalled step, reconcile, expire, finish a ticket write)
- ``p:lock:<id>``             one worker at a time advances a verification
- ``p:seen:<key>``            webhook deliveries already taken (dedupe)
- ``p:cursor:<desk>``         where a desk's interrupted poll resumes
- ``p:audit``                 stream: the audit trail (``worker.audit``), bounded by its own
                              retention, appended by the scripts below with each transition
- ``p:heartbeat:sweep``       when the sweep last ran: beat's heartbeat, read by ``deskgate doctor``
- ``p:state:<state>``         sorted set per open state (requested, sent, review): the open
                              verifications in it, by when they entered it (for the metrics)
- ``p:firstseen:<hash>``      when Deskgate first saw a requester's field value
                              (``worker.lifecycle.first_seen``)
- ``p:marked:<desk>:<ticket>`` the verification whose final outcome Deskgate last wrote on the
                              ticket (the marker audit's proof), expiring with the records

Transitions run as Lua scripts, so "check the state, change it, update the indexes" is one step:
a transition that already happened is a no-op, and every task and webhook may arrive twice.
Finished verifications expire after the retention period, so Redis stays bounded.
"""

from __future__ import annotations

import json
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

from redis import Redis

from connectors.ticketing import Ticket
from worker import audit
from worker.audit.chain import Chain, ChainBusy, head_key
from worker.lifecycle import FINAL, OPEN, State, sources

# The open states, in the order of their indexes in the transition scripts' KEYS (6, 7, 8).
INDEXED = (State.REQUESTED, State.SENT, State.REVIEW)
assert frozenset(INDEXED) == OPEN

# KEYS: open key, record, due, interview key, audit stream, the state's index, audit chain head
# ARGV: id, due score, adopt (1/0), index interview (1/0), audit max entries, sealed audit entry
#       (``Chain.seal``), now ('' if the state is not open), field, value, ...
# An adoption (a verification rebuilt from its gate note) never replaces a record or a session
# mapping that exists: the note may name another ticket's live verification.
_OPEN = (
    audit.LUA
    + """
local existing = redis.call('GET', KEYS[1])
if existing then return {'open', existing} end
if ARGV[3] == '1' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'taken', 'record'} end
  if ARGV[4] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then return {'taken', 'session'} end
end
local sealed = cjson.decode(ARGV[6])
if not audit_ready(KEYS[7], KEYS[2], pairs_table(ARGV, 8), sealed) then return {'stale'} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 8))
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if ARGV[7] ~= '' then redis.call('ZADD', KEYS[6], ARGV[7], ARGV[1]) end
if ARGV[4] == '1' then redis.call('SET', KEYS[4], ARGV[1]) end
return {'new', '', audit_append(KEYS[5], KEYS[7], ARGV[5], sealed)}
"""
)

# KEYS: record, due, open key, interview key, audit stream, the open states' indexes (requested,
#       sent, review), audit chain head
# ARGV: to, allowed sources (csv), final (1/0), ttl, id, due score or '', index interview (1/0),
#       audit max entries, sealed audit entry, now, position of to's index in KEYS or '' (to is
#       not open), field, value, ...
# Returns {} (no record), {'same', record} (not moved), {'taken'} (the interview key names
# another verification: Incode handed out a session it had handed out before; nothing changed),
# {'stale'} (the chain's head or the record moved since the entry was sealed; nothing changed)
# or {'moved', record, audit entry}.
# A final state keeps the ticket's open key (with the retention TTL): the verification owns the
# ticket until its outcome is written there (``release``), so no second request starts meanwhile.
_TRANSITION = (
    audit.LUA
    + """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {} end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do
  if s == current then allowed = true end
end
if not allowed then return {'same', redis.call('HGETALL', KEYS[1])} end
if ARGV[7] == '1' then
  local owner = redis.call('GET', KEYS[4])
  if owner and owner ~= ARGV[5] then return {'taken'} end
end
local sealed = cjson.decode(ARGV[9])
local changes = pairs_table(ARGV, 12)
changes['state'] = ARGV[1]
if not audit_ready(KEYS[9], KEYS[1], changes, sealed) then return {'stale'} end
redis.call('HSET', KEYS[1], 'state', ARGV[1], unpack(ARGV, 12))
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5]) end
for i = 6, 8 do redis.call('ZREM', KEYS[i], ARGV[5]) end
if ARGV[11] ~= '' then redis.call('ZADD', KEYS[tonumber(ARGV[11])], ARGV[10], ARGV[5]) end
if ARGV[7] == '1' then redis.call('SET', KEYS[4], ARGV[5]) end
if ARGV[3] == '1' then
  if redis.call('GET', KEYS[3]) == ARGV[5] then redis.call('EXPIRE', KEYS[3], ARGV[4]) end
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
local entry = audit_append(KEYS[5], KEYS[9], ARGV[8], sealed)
return {'moved', redis.call('HGETALL', KEYS[1]), entry}
"""
)

# A lock, or a ticket's open key, deleted only by its holder. KEYS: the key  ARGV: its value
_DELETE_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# An Incode webhook's session, in one round trip. KEYS: interview key   ARGV: record key prefix
# The record must exist too: an index that outlived its record is an unknown session, which
# starts the recovery scan. Only the id is read, not the record. (The delivery's dedupe key is
# taken with its enqueue, in one step: ``RedisDispatcher.send_once``.)
_SESSION = """
local vid = redis.call('GET', KEYS[1])
if not vid or redis.call('EXISTS', ARGV[1] .. vid) == 0 then return '' end
return vid
"""


# A verification dropped without an outcome (its ticket was deleted): free the ticket, leave the
# sweep's list, and give the record and its session index the retention TTL, so nothing
# abandoned stays in Redis for ever. Keys that already expire keep their TTL.
# Its audit event is appended once, the first time (a record already marked abandoned, or gone,
# appends nothing).
# KEYS: record, due, open key, interview key, audit stream, the open states' indexes, audit chain
#       head
# ARGV: id, ttl, audit max, sealed audit entry. Returns the entry, {} or {'stale'} (as above).
_ABANDON = (
    audit.LUA
    + """
local entry = {}
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HGET', KEYS[1], 'abandoned') ~= '1' then
  local sealed = cjson.decode(ARGV[4])
  if not audit_ready(KEYS[9], KEYS[1], {}, sealed) then return {'stale'} end
  redis.call('HSET', KEYS[1], 'abandoned', '1')
  entry = audit_append(KEYS[5], KEYS[9], ARGV[3], sealed)
end
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 6, 8 do redis.call('ZREM', KEYS[i], ARGV[1]) end
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if redis.call('GET', KEYS[4]) == ARGV[1] and redis.call('TTL', KEYS[4]) == -1 then
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
return entry
"""
)


# A ticket write's audit event, sealed on the chain. KEYS: audit stream, audit chain head
# ARGV: audit max, sealed audit entry. Returns the entry or {'stale'}.
_APPEND = (
    audit.LUA
    + """
local sealed = cjson.decode(ARGV[2])
if not audit_ready(KEYS[2], false, {}, sealed) then return {'stale'} end
return audit_append(KEYS[1], KEYS[2], ARGV[1], sealed)
"""
)

# How often an append is tried while other workers' appends keep moving the chain's head.
CHAIN_TRIES = 200
STALE = ["stale"]


class SessionTaken(Exception):
    """Incode answered a request for a link with a session already mapped to another
    verification: its result belongs to that one, never to this one."""


@dataclass(frozen=True)
class Verification:
    id: str
    desk: str
    ticket_id: str
    ticket_display: str
    requester_id: str
    reason: str
    state: State
    created_at: float
    updated_at: float
    interview_id: str = ""
    channel: str = ""
    destination: str = ""  # masked: the whole address is never stored
    expires_at: float = 0.0
    result: str = ""  # Incode's result as read: overall status, manual review decision
    detail: str = ""  # why: the checks that did not pass, or the error an agent must fix
    gated: bool = False  # the gate note is on the ticket
    fresh: bool = False  # Incode's session had no result yet when first read after it was sent
    written: str = ""  # the last state whose outcome is on the ticket
    ticket: str = ""  # the ticket as Deskgate's last write left it (``remember``)
    refusals: int = 0  # how often the desk refused a write for good (backs the retries off)
    origin: str = ""  # how it started: "push", "poll" or "recovery" (the audit trail's)
    sent_at: float = 0.0  # when Incode sent the link
    requester_key: str = ""  # who the link goes to, as a keyed hash (``LinkCap.requester_key``)
    flagged_by: str = ""  # the desk's record id of who flagged the ticket (``Desk.flagged_by``)
    lifted_by: str = ""  # who took the gate off before the result, as the desk names agents
    idp: str = ""  # the desk's identity provider, when it has one (``[idps.<name>]``)
    idp_user: str = ""  # the IdP's own id of the employee of record (never an address)
    privileged: bool = False  # the IdP says the employee holds admin rights
    remark: str = ""  # what the gate note adds about the IdP's record (masked, no address)

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Verification:
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            if f.name == "state":
                values[f.name] = State(value)
            elif f.name in ("created_at", "updated_at", "expires_at", "sent_at"):
                values[f.name] = float(value or 0)
            elif f.name == "refusals":
                values[f.name] = int(value or 0)
            elif f.name in ("gated", "fresh", "privileged"):
                values[f.name] = value == "1"
            else:
                values[f.name] = value
        return cls(**values)

    def remember(self, ticket: Ticket) -> str:
        """What ``recall`` needs to rebuild ``ticket`` as a write returned it, in a few bytes:
        what the verification holds already is left out, and so is the requester's record (read
        fresh when needed, never stored). Few bytes matter: one hash value over 64 bytes turns
        Redis's compact encoding of the whole record into a hash table, ~4x the memory."""
        same = ticket.requester_id == self.requester_id
        requester = "" if same else ticket.requester_id  # None (no requester) stays null
        fields = [ticket.version, ticket.status, ticket.marker, ticket.active, ticket.writable]
        return json.dumps([*fields, requester, ticket.held], separators=(",", ":"))

    def recall(self) -> Ticket | None:
        """The ticket ``remember`` stored, or None if nothing (or something unreadable) was."""
        try:
            version, status, marker, active, writable, requester, held = json.loads(self.ticket)
        except (ValueError, TypeError):
            return None
        return Ticket(
            id=self.ticket_id,
            display_id=self.ticket_display,
            requester_id=self.requester_id if requester == "" else requester,
            reason=self.reason,
            marker=marker,
            active=bool(active),
            writable=bool(writable),
            status=status,
            version=version,
            held=bool(held),
        )

    @property
    def unwritten(self) -> bool:
        """The ticket does not yet show this state's outcome."""
        return self.state in FINAL | {State.REVIEW} and self.written != self.state


def _strings(mapping: dict[str, Any]) -> dict[str, str]:
    """Redis hashes hold strings; booleans become "1" or ""."""
    return {k: ("1" if v else "") if isinstance(v, bool) else str(v) for k, v in mapping.items()}


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _flat(mapping: dict[str, Any]) -> list[str]:
    return [item for pair in _strings(mapping).items() for item in pair]


AUDIT_MAX_EVENTS = 500_000
AUDIT_RETENTION_SECONDS = 400 * 86400
HEARTBEAT_TTL = 86400


class Store:
    def __init__(
        self,
        redis: Redis[str],
        prefix: str,
        retention_seconds: int,
        *,
        chain: Chain,
        audit_max_events: int = AUDIT_MAX_EVENTS,
        audit_retention_seconds: int = AUDIT_RETENTION_SECONDS,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention = retention_seconds
        self.audit_max_events = audit_max_events
        self.audit_retention = audit_retention_seconds
        self.audit_key = audit.stream_key(prefix)
        self.chain = chain
        self.chain_key = head_key(prefix)
        # One append at a time from this store (a process's threads share it): they would only
        # make each other's sealed events stale. Other processes' appends are met by retrying.
        self._appending = threading.Lock()
        self._open = redis.register_script(_OPEN)
        self._transition = redis.register_script(_TRANSITION)
        self._delete_if_held = redis.register_script(_DELETE_IF_HELD)
        self._session = redis.register_script(_SESSION)
        self._abandon = redis.register_script(_ABANDON)
        self._append = redis.register_script(_APPEND)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- reading ---------------------------------------------------------------------------

    def get(self, vid: str) -> Verification | None:
        raw = self.redis.hgetall(self._key("v", vid))
        return Verification.from_hash(raw) if raw else None

    def open_for(self, desk: str, ticket_id: str) -> Verification | None:
        vid = self.redis.get(self._key("open", desk, ticket_id))
        return self.get(vid) if vid else None

    def due(self, now: float, limit: int = 500) -> list[str]:
        return list(self.redis.zrangebyscore(self._key("due"), "-inf", now, start=0, num=limit))

    def open_states(
        self, overdue_before: float
    ) -> tuple[dict[State, tuple[int, float | None]], int]:
        """For each open state, how many verifications are in it and when the longest-standing
        of them entered it (None: none), and how many are due before ``overdue_before``: one
        round trip of O(log n) reads, cheap enough for every scrape."""
        pipe = self.redis.pipeline(transaction=False)
        for state in INDEXED:
            pipe.zcard(self._state_key(state))
            pipe.zrange(self._state_key(state), 0, 0, withscores=True)
        pipe.zcount(self._key("due"), "-inf", f"({overdue_before}")
        replies = pipe.execute()
        found = {}
        for i, state in enumerate(INDEXED):
            count, oldest = replies[2 * i], replies[2 * i + 1]
            found[state] = (int(count), float(oldest[0][1]) if oldest else None)
        return found, int(replies[-1])

    def index_open_states(self) -> int:
        """Put every open verification in its state's index, unless it is there already: the
        indexes began with the metrics, and a verification opened before them would otherwise
        be missing from the open-verification gauges until it moved. Returns how many it added.
        Cheap: only open verifications are looked at (one ``p:open`` key each)."""
        added = 0
        for open_key in self.redis.scan_iter(self._key("open", "*"), count=500):
            vid = self.redis.get(open_key)
            if not vid:
                continue
            state, since = self.redis.hmget(self._key("v", vid), ["state", "updated_at"])
            if state in {s.value for s in INDEXED}:
                score = float(since or 0)
                added += int(self.redis.zadd(self._state_key(State(state)), {vid: score}, nx=True))
        return added

    def _state_key(self, state: State) -> str:
        return self._key("state", state.value)

    def _state_keys(self) -> list[str]:
        return [self._state_key(state) for state in INDEXED]

    # -- writing ---------------------------------------------------------------------------

    def open(
        self,
        *,
        desk: str,
        ticket_id: str,
        ticket_display: str,
        requester_id: str,
        reason: str,
        now: float,
        resume_at: float,
        origin: str = "poll",
        flagged_by: str = "",
    ) -> tuple[Verification, bool]:
        """Record a new verification unless the ticket has an open one; says which it returns.
        ``origin``: what announced the ticket ("push" or "poll"), ``flagged_by``: who flagged it
        by the desk's record (``Desk.flagged_by``), both for the audit trail."""
        record = {
            "id": secrets.token_hex(12),
            "desk": desk,
            "ticket_id": ticket_id,
            "ticket_display": ticket_display,
            "requester_id": requester_id,
            "reason": reason,
            "state": State.REQUESTED.value,
            "created_at": now,
            "updated_at": now,
            "origin": origin,
            "flagged_by": flagged_by,
        }
        head = audit.head("verification.requested", now)
        found, existing = self._insert(record, resume_at, head, adopt=False)
        if found == "open":
            v = self.get(existing)
            if v is not None:
                return v, False
        return Verification.from_hash(_strings(record)), True

    def adopt(
        self, *, vid: str, interview_id: str, state: State, now: float, **fields: Any
    ) -> str | Verification:
        """Record a verification rebuilt from the ticket after Redis lost it, under its old id
        and session. Never replaces anything: returns the new record, or why not ("open": the
        ticket has an open verification, "record" / "session": that id or session exists)."""
        record = {
            "id": vid,
            "interview_id": interview_id,
            "state": state.value,
            "created_at": now,
            "updated_at": now,
            "origin": "recovery",
            **fields,
        }
        head = audit.head("verification.recovered", now)
        found, why = self._insert(record, now, head, adopt=True)
        if found == "new":
            return Verification.from_hash(_strings(record))
        return "open" if found == "open" else str(why)

    def _insert(
        self, record: dict[str, Any], resume_at: float, head: list[str], *, adopt: bool
    ) -> tuple[str, str]:
        vid, interview = str(record["id"]), str(record.get("interview_id") or "")
        entry_fields = audit.entry(head, _strings(record))

        def attempt() -> Any:
            return self._open(
                keys=[
                    self._key("open", str(record["desk"]), str(record["ticket_id"])),
                    self._key("v", vid),
                    self._key("due"),
                    self._key("iv", interview),
                    self.audit_key,
                    self._state_key(State(record["state"])),
                    self.chain_key,
                ],
                args=[vid, resume_at, "1" if adopt else "0", "1" if interview else "0",
                      self.audit_max_events, self.chain.seal(entry_fields, self._chain_head()),
                      record["updated_at"] if State(record["state"]) in OPEN else "",
                      *_flat(record)],
            )  # fmt: skip

        found, detail, *entry = self._chained(attempt)
        if found == "new":
            audit.notify(_pairs(entry[0]))
        return str(found), str(detail)

    def advance(
        self,
        v: Verification,
        to: State,
        now: float,
        *,
        due: float | None = None,
        index_interview: bool = False,
        overturn: bool = False,
        code: str = "",
        **changes: Any,
    ) -> Verification:
        """Move ``v`` to ``to`` if its current state allows it, and return the record as it then
        stands: in ``to`` if it moved, as another step left it if not, ``v`` itself if the record
        is gone. A move appends its audit event (``code``: why, for errors) in the same step.

        ``overturn`` replaces ``v``'s state whatever the lifecycle allows, if it is still
        ``v.state``: only for a result found not to apply before it is written.

        ``index_interview`` maps the session to ``v`` in the same step, and raises
        ``SessionTaken`` (nothing changed) if it already names another verification."""
        interview = str(
            changes.get("interview_id")
            or v.interview_id
            or self.redis.hget(self._key("v", v.id), "interview_id")
            or ""
        )
        head = audit.head(f"verification.{to.value}", now, code)
        after = {"state": to.value, **_strings({"updated_at": now, **changes})}

        def attempt() -> Any:
            prev, record = self._chain_head_and(v.id)
            return self._transition(
                keys=[
                    self._key("v", v.id),
                    self._key("due"),
                    self._key("open", v.desk, v.ticket_id),
                    self._key("iv", interview),
                    self.audit_key,
                    *self._state_keys(),
                    self.chain_key,
                ],
                args=[
                    to.value,
                    v.state.value if overturn else ",".join(sorted(s.value for s in sources(to))),
                    "1" if to in FINAL else "0",
                    self.retention,
                    v.id,
                    "" if due is None else due,
                    "1" if index_interview else "0",
                    self.audit_max_events,
                    self.chain.seal(audit.entry(head, {**record, **after}), prev),
                    now,
                    INDEXED.index(to) + 6 if to in OPEN else "",
                    *_flat({"updated_at": now, **changes}),
                ],
            )

        result = self._chained(attempt)
        if not result:
            return v
        if result[0] == "taken":
            raise SessionTaken(interview)
        if result[0] == "moved":
            audit.notify(_pairs(result[2]))
        return Verification.from_hash(_pairs(result[1]))

    def release(self, v: Verification) -> None:
        """The ticket is free for a new verification: ``v`` ended and its outcome is on the ticket
        (or was given up). Only ``v``'s own hold is let go."""
        self._delete_if_held(keys=[self._key("open", v.desk, v.ticket_id)], args=[v.id])

    def mark_asking(self, desk: str, ticket_id: str, at: float, window: float) -> None:
        """Incode is being asked for a link for the ticket at ``at``; the mark lasts ``window``."""
        key = self._key("asking", desk, ticket_id)
        self.redis.set(key, repr(at), ex=max(1, math.ceil(window)))

    def clear_asking(self, desk: str, ticket_id: str) -> None:
        """The request certainly sent nothing (refused, or never reached Incode)."""
        self.redis.delete(self._key("asking", desk, ticket_id))

    def asking_since(self, desk: str, ticket_id: str) -> float:
        """When Incode was last asked for a link for the ticket, if a request may still be in
        flight; 0 if none may be."""
        value = self.redis.get(self._key("asking", desk, ticket_id))
        return float(value) if value else 0.0

    def update(self, vid: str, **changes: Any) -> None:
        self.redis.hset(self._key("v", vid), mapping=_strings(changes))  # type: ignore[arg-type]

    def schedule(self, vid: str, at: float) -> None:
        self.redis.zadd(self._key("due"), {vid: at})

    def unschedule(self, vid: str) -> None:
        self.redis.zrem(self._key("due"), vid)

    def abandon(self, v: Verification, now: float | None = None) -> None:
        """Drop ``v`` without an outcome (its ticket was deleted), in one step: the ticket's open
        marker if it still names ``v``, its place on the due list, and the retention TTL on its
        record and session index, which would otherwise never expire."""
        interview = v.interview_id or self.redis.hget(self._key("v", v.id), "interview_id") or ""
        head = audit.head("verification.abandoned", time.time() if now is None else now)

        def attempt() -> Any:
            prev, record = self._chain_head_and(v.id)
            return self._abandon(
                keys=[
                    self._key("v", v.id),
                    self._key("due"),
                    self._key("open", v.desk, v.ticket_id),
                    self._key("iv", interview),
                    self.audit_key,
                    *self._state_keys(),
                    self.chain_key,
                ],
                args=[v.id, self.retention, self.audit_max_events,
                      self.chain.seal(audit.entry(head, record), prev)],
            )  # fmt: skip

        entry = self._chained(attempt)
        if entry:
            audit.notify(_pairs(entry))

    def written(self, v: Verification, code: str, now: float) -> None:
        """Audit a write Deskgate made on ``v``'s ticket, once the desk accepted it: ``code``
        "gate" (the gate note, hold and marker) or "outcome" (``v.state``'s note and status)."""
        state, state_at = (State.SENT, v.sent_at) if code == "gate" else (v.state, v.updated_at)
        fields = audit.entry(
            audit.head("ticket.written", now, code),
            _strings(asdict(v)),
            state=state.value,
            state_at=repr(state_at),
            detail=f"{'gate' if code == 'gate' else state.value} written on the ticket",
        )
        if code == "outcome" and v.state in FINAL:
            marked = self._key("marked", v.desk, v.ticket_id)
            self.redis.set(marked, v.id, ex=self.retention)
        self._append_event(fields)

    def record_admin(self, event: str, now: float, *, desk: str, actor: str, detail: str) -> None:
        """Audit a change to Deskgate's own set-up (``audit.ADMIN_EVENTS``): ``actor`` is who
        made it, ``detail`` what changed (object names, never a secret)."""
        head = audit.head(event, now)
        self._append_event(audit.entry(head, {}, desk=desk, actor=actor, detail=detail))

    def marked(self, desk: str, ticket_id: str) -> Verification | None:
        """The verification whose final outcome Deskgate last wrote on the ticket, if recorded."""
        vid = self.redis.get(self._key("marked", desk, ticket_id))
        return self.get(vid) if vid else None

    def ticket_event(
        self, event: str, code: str, now: float, record: dict[str, Any], **fields: str
    ) -> None:
        """Audit what Deskgate found on a ticket (``ticket.gate_lifted``,
        ``ticket.marker_overturned``): ``record`` is the verification's (``asdict``), or what
        is known of the ticket when no verification is recorded."""
        self._append_event(audit.entry(audit.head(event, now, code), _strings(record), **fields))

    def sealed_step(
        self, vid: str, head: list[str], run: Callable[[str, str], Any], **fields: str
    ) -> Any:
        """For another module's script that changes its own keys and appends its event in the
        same step (``worker.idp.grants``): ``run(sealed, record key)`` until it appends (or has
        nothing to append), ``sealed`` being the event (``head``, ``vid``'s record, ``fields``)
        sealed on the chain's head. The script calls ``audit_ready`` with the record key before
        it changes anything, and ``audit_append`` last."""

        def attempt() -> Any:
            prev, record = self._chain_head_and(vid)
            sealed = self.chain.seal(audit.entry(head, record, **fields), prev)
            return run(sealed, self._key("v", vid))

        entry = self._chained(attempt)
        if entry:
            audit.notify(_pairs(entry))
        return entry

    def _append_event(self, fields: dict[str, str]) -> None:
        entry = self._chained(
            lambda: self._append(
                keys=[self.audit_key, self.chain_key],
                args=[self.audit_max_events, self.chain.seal(fields, self._chain_head())],
            )
        )
        audit.notify(_pairs(entry))

    def _chain_head(self) -> str:
        return self.redis.get(self.chain_key) or ""

    def _chain_head_and(self, vid: str) -> tuple[str, dict[str, str]]:
        """The chain's head and the verification's record, read together, to seal an entry."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.chain_key)
        pipe.hgetall(self._key("v", vid))
        head, record = pipe.execute()
        return head or "", record

    def _chained(self, attempt: Callable[[], Any]) -> Any:
        """``attempt()`` until its script appended (or had nothing to append): another process's
        append between the read and the script makes it answer ``stale`` and change nothing."""
        for tries in range(CHAIN_TRIES):
            with self._appending:
                result = attempt()
            if result != STALE:
                return result
            if tries >= 3:  # crowded: let the others through
                time.sleep(random.uniform(0, 0.001 * tries))
        raise ChainBusy(f"the audit chain's head moved {CHAIN_TRIES} times in a row")

    def trim_audit(self, now: float) -> int:
        """Drop audit events older than the audit retention (the sweep calls this); returns how
        many went. Exact: each sweep removes only the few that aged out since the last one."""
        oldest = int((now - self.audit_retention) * 1000)
        return int(self.redis.xtrim(self.audit_key, minid=oldest, approximate=False))

    @contextmanager
    def lock(self, vid: str, ttl: int) -> Iterator[bool]:
        """Yield True if this caller holds the verification's lock (released on exit)."""
        key, token = self._key("lock", vid), secrets.token_hex(8)
        held = bool(self.redis.set(key, token, nx=True, ex=ttl))
        try:
            yield held
        finally:
            if held:
                self._delete_if_held(keys=[key], args=[token])

    def cursor(self, desk: str) -> str | None:
        """Where a desk's interrupted poll resumes (None: from the start)."""
        return self.redis.get(self._key("cursor", desk))

    def set_cursor(self, desk: str, cursor: str | None) -> None:
        if cursor is None:
            self.redis.delete(self._key("cursor", desk))
        else:
            self.redis.set(self._key("cursor", desk), cursor)

    def session(self, interview_id: str) -> str | None:
        """The id of the verification whose Incode session this is, or None (unknown)."""
        vid = self._session(keys=[self._key("iv", interview_id)], args=[self._key("v", "")])
        return str(vid) if vid else None

    def record_sweep(self, now: float) -> None:
        # Expires, so a beat that stopped long ago reads as "never" rather than as a stale date.
        self.redis.set(self._key("heartbeat", "sweep"), repr(now), ex=HEARTBEAT_TTL)

    def last_sweep(self) -> float | None:
        value = self.redis.get(self._key("heartbeat", "sweep"))
        return float(value) if value else None

    def seen_key(self, kind: str, key: str) -> str:
        """The key that marks a webhook delivery as taken (``RedisDispatcher.send_once``)."""
        return self._key("seen", kind, key)
