"""Grants: what a verified result lets an agent ask Deskgate to do in the identity provider (IdP),
once, for a short while (docs/idp.md, "Grants").

A grant is opened when a VERIFIED outcome is on a ticket of a desk with an IdP. It is bound to
the desk, the ticket, the verification, the ticket's requester, the IdP and the IdP user the
verification proved, and lists the actions the reason allows (``[reasons."<reason>"].actions``
that the IdP kind can perform); it lasts ``grant_minutes``. The act step (``worker.idp.actions``)
reserves it atomically before it calls the IdP: one press wins, and a grant once used, or whose
call may have reached the IdP, is never used again.

Keys (``p`` is the store's prefix):

- ``p:grant:<desk>:<ticket>``  hash: the ticket's latest grant (a newer verified result of the
                               ticket replaces it); kept a day past its end so a late request is
                               told why it is refused
- ``p:grants:due``             sorted set: open grants by when they lapse (the sweep expires them)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from worker import audit
from worker.lifecycle.store import Store

KEPT_AFTER = 86400  # a lapsed or used grant is kept this long, to say why a request is refused

# Why a request is refused (the ``grant.refused`` events' code), as the note says it.
Refusal = Literal[
    "no_grant",
    "grant_expired",
    "grant_used",
    "other_requester",
    "other_idp_user",
    "action_not_allowed",
    "idp_inactive",
]

# The transitions that are a grant's own events (opened, used, expired) append them in the same
# step, sealed on the audit chain (``Store.sealed_step``), with the verification's fields: no
# transition without its event. Each returns the entry, {} (nothing to do) or {'stale'}.
# KEYS: grant, due index, audit stream, chain head, verification record
# ARGV: verification id, expires at, ttl, audit max, sealed entry, field, value...
# Opening is idempotent: a grant already opened for this verification is left as it is.
_OPEN = (
    audit.LUA
    + """
if redis.call('HGET', KEYS[1], 'verification') == ARGV[1] then return {} end
local sealed = cjson.decode(ARGV[5])
if not audit_ready(KEYS[4], KEYS[5], {}, sealed) then return {'stale'} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
return audit_append(KEYS[3], KEYS[4], ARGV[4], sealed)
"""
)

# One press wins. KEYS: grant, due index   ARGV: now, action, requester id, agent
# Returns 'ok' (reserved for this press) or why not.
_RESERVE = """
local state, expires, requester, actions = unpack(
  redis.call('HMGET', KEYS[1], 'state', 'expires_at', 'requester_id', 'actions'))
if not state then return 'no_grant' end
if state == 'used' or state == 'reserved' then return 'grant_used' end
if state == 'expired' or tonumber(ARGV[1]) >= tonumber(expires) then return 'grant_expired' end
if requester ~= ARGV[3] then return 'other_requester' end
local allowed = false
for a in string.gmatch(actions, '[^,]+') do
  if a == ARGV[2] then allowed = true end
end
if not allowed then return 'action_not_allowed' end
redis.call('HSET', KEYS[1], 'state', 'reserved', 'action', ARGV[2], 'agent', ARGV[4])
redis.call('ZREM', KEYS[2], KEYS[1])
return 'ok'
"""

# KEYS: grant, due index   ARGV: expires at
# A reservation whose call never reached the IdP (told to wait, or unreachable) is let go.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'reserved' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'open', 'action', '', 'agent', '')
redis.call('ZADD', KEYS[2], ARGV[1], KEYS[1])
return 1
"""

# KEYS: grant, due index, audit stream, chain head, verification record
# ARGV: now, audit max, sealed entry. An open grant past its end lapses, once.
_EXPIRE = (
    audit.LUA
    + """
local state, expires = unpack(redis.call('HMGET', KEYS[1], 'state', 'expires_at'))
if state ~= 'open' then redis.call('ZREM', KEYS[2], KEYS[1]) return {} end
if tonumber(ARGV[1]) < tonumber(expires) then return {} end
local sealed = cjson.decode(ARGV[3])
if not audit_ready(KEYS[4], KEYS[5], {}, sealed) then return {'stale'} end
redis.call('HSET', KEYS[1], 'state', 'expired')
redis.call('ZREM', KEYS[2], KEYS[1])
return audit_append(KEYS[3], KEYS[4], ARGV[2], sealed)
"""
)

# KEYS: grant, audit stream, chain head, verification record
# ARGV: result, request id, audit max, sealed entry. The reserved grant's call reached the IdP:
# used for good.
_USED = (
    audit.LUA
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'reserved' then return {} end
local sealed = cjson.decode(ARGV[4])
if not audit_ready(KEYS[3], KEYS[4], {}, sealed) then return {'stale'} end
redis.call('HSET', KEYS[1], 'state', 'used', 'result', ARGV[1], 'request_id', ARGV[2])
return audit_append(KEYS[2], KEYS[3], ARGV[3], sealed)
"""
)


@dataclass(frozen=True)
class Grant:
    verification: str
    desk: str
    ticket_id: str
    requester_id: str  # the desk's requester the verification was for
    idp: str
    idp_user: str
    reason: str
    actions: tuple[str, ...]
    opened_at: float
    expires_at: float
    state: str = "open"  # open, reserved, used, expired
    action: str = ""  # the action it was reserved or used for
    agent: str = ""  # who asked (``Desk.requested_by``)
    request_id: str = ""  # the IdP's id for the call
    result: str = ""  # done, unanswered

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Grant:
        values: dict[str, Any] = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
        values["actions"] = tuple(a for a in raw.get("actions", "").split(",") if a)
        for name in ("opened_at", "expires_at"):
            values[name] = float(raw.get(name) or 0)
        return cls(**values)

    def to_hash(self) -> dict[str, str]:
        raw = {k: str(v) for k, v in asdict(self).items()}
        raw["actions"] = ",".join(self.actions)
        return raw


class Grants:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self.prefix = store.prefix
        self.due_key = f"{store.prefix}:grants:due"
        self._open = self.redis.register_script(_OPEN)
        self._reserve = self.redis.register_script(_RESERVE)
        self._release = self.redis.register_script(_RELEASE)
        self._expire = self.redis.register_script(_EXPIRE)
        self._used = self.redis.register_script(_USED)

    def key(self, desk: str, ticket_id: str) -> str:
        return f"{self.prefix}:grant:{desk}:{ticket_id}"

    def get(self, desk: str, ticket_id: str) -> Grant | None:
        raw = self.redis.hgetall(self.key(desk, ticket_id))
        return Grant.from_hash(raw) if raw else None

    def _step(self, event: str, grant: Grant, now: float, run: Any) -> bool:
        """``run(sealed, record key)`` as one sealed step of ``grant``'s verification, its event
        carrying what the grant adds (docs/audit.md); True when it appended."""
        fields = {"agent": grant.agent, "action": grant.action, "idp_request": grant.request_id}
        entry = self.store.sealed_step(grant.verification, audit.head(event, now), run, **fields)
        return bool(entry)

    def open(self, grant: Grant) -> bool:
        """Open ``grant`` (once per verification), audited ``grant.opened``."""
        key = self.key(grant.desk, grant.ticket_id)
        ttl = int(grant.expires_at - grant.opened_at) + KEPT_AFTER
        flat = [item for pair in grant.to_hash().items() for item in pair]
        store = self.store

        def run(sealed: str, record: str) -> Any:
            return self._open(
                keys=[key, self.due_key, store.audit_key, store.chain_key, record],
                args=[grant.verification, grant.expires_at, ttl, store.audit_max_events, sealed,
                      *flat],
            )  # fmt: skip

        return self._step("grant.opened", grant, grant.opened_at, run)

    def revoke(self, desk: str, ticket_id: str) -> None:
        """A new verification of the ticket started: an older result's grant no longer
        applies."""
        key = self.key(desk, ticket_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.zrem(self.due_key, key)
        pipe.execute()

    def reserve(self, grant: Grant, action: str, requester_id: str, agent: str, now: float) -> str:
        """'ok' when this press holds the grant for ``action`` now, or the ``Refusal``."""
        key = self.key(grant.desk, grant.ticket_id)
        return str(self._reserve(keys=[key, self.due_key], args=[now, action, requester_id, agent]))

    def release(self, grant: Grant) -> None:
        key = self.key(grant.desk, grant.ticket_id)
        self._release(keys=[key, self.due_key], args=[grant.expires_at])

    def used(self, grant: Grant, result: str, request_id: str, now: float) -> None:
        """The reserved grant's call reached the IdP (``result`` done, or unanswered): used for
        good, whatever follows; audited ``grant.used``."""
        key = self.key(grant.desk, grant.ticket_id)
        store = self.store

        def run(sealed: str, record: str) -> Any:
            return self._used(
                keys=[key, store.audit_key, store.chain_key, record],
                args=[result, request_id, store.audit_max_events, sealed],
            )

        self._step("grant.used", replace(grant, request_id=request_id), now, run)

    def expire_due(self, now: float, limit: int = 500) -> int:
        """Lapse the open grants whose time is up; each audited ``grant.expired`` once."""
        expired = 0
        store = self.store
        for key in self.redis.zrangebyscore(self.due_key, "-inf", now, start=0, num=limit):
            raw = self.redis.hgetall(key)
            if not raw:  # gone (revoked): nothing to lapse
                self.redis.zrem(self.due_key, key)
                continue

            def run(sealed: str, record: str, key: str = key) -> Any:
                return self._expire(
                    keys=[key, self.due_key, store.audit_key, store.chain_key, record],
                    args=[now, store.audit_max_events, sealed],
                )

            expired += self._step("grant.expired", Grant.from_hash(raw), now, run)
        return expired

    def audit(
        self,
        event: str,
        grant: Grant,
        now: float,
        code: str = "",
        *,
        ticket: str = "",
        idp_request: str | None = None,
        detail: str = "",
    ) -> None:
        """Append a grant or action event: the verification's fields, and what the grant adds
        (``agent``, ``action``, ``idp_request``: docs/audit.md). ``detail``: the masked contact
        acted on, if any."""
        record = self.redis.hgetall(f"{self.prefix}:v:{grant.verification}")
        self.store.ticket_event(
            event,
            code,
            now,
            record,
            desk=grant.desk,
            reason=grant.reason,
            ticket=record.get("ticket_display") or ticket,
            idp=grant.idp,
            idp_user=grant.idp_user,
            agent=grant.agent,
            action=grant.action,
            idp_request=grant.request_id if idp_request is None else idp_request,
            detail=detail,
        )
