"""What Deskgate did about each identity provider (IdP) user, by that user: how their
verifications ended and which actions Deskgate performed on them. The lifecycle writes it (a
verification of a desk with an IdP, the grants and the act step); the bypass detector reads it to
tell an admin action a verified ticket explains from one that nothing explains.

Key (``p`` is the store's prefix): ``p:idpledger:<idp>:<user id>``, a sorted set scored by the
time of the entry, each member one entry as compact JSON. The IdP's user id is its own opaque id
(Okta ``00u…``, an Entra object id), never an address. Entries older than the retention are
trimmed on every write, and the key expires with its newest entry, so the ledger stays bounded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from redis import Redis

EntryKind = Literal["verification", "action"]


@dataclass(frozen=True)
class LedgerEntry:
    kind: EntryKind
    at: float  # epoch seconds: when the verification ended, or the action was performed
    desk: str
    ticket: str  # the ticket's API id on that desk
    verification: str
    reason: str = ""
    # verification: its final state (verified, failed, expired, error) or "refused" (privileged
    # policy); action: "done", or "unanswered" (the IdP may have acted)
    state: str = ""
    action: str = ""  # for an action: which (connectors.identity_provider.ACTIONS)
    request_id: str = ""  # for an action: the IdP's id for the call


class IdpLedger:
    def __init__(self, redis: Redis[str], prefix: str, retention_seconds: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention = retention_seconds

    def key(self, idp: str, user_id: str) -> str:
        return f"{self.prefix}:idpledger:{idp}:{user_id}"

    def record(self, idp: str, user_id: str, entry: LedgerEntry) -> None:
        """Add ``entry``, trimming what is older than the retention."""
        key = self.key(idp, user_id)
        member = json.dumps(asdict(entry), separators=(",", ":"), sort_keys=True)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(key, {member: entry.at})
        pipe.zremrangebyscore(key, "-inf", f"({entry.at - self.retention}")
        pipe.expire(key, self.retention)
        pipe.execute()

    def entries(self, idp: str, user_id: str, since: float, until: float) -> list[LedgerEntry]:
        """The entries from ``since`` to ``until`` (inclusive), oldest first."""
        raw = self.redis.zrangebyscore(self.key(idp, user_id), since, until)
        return [LedgerEntry(**json.loads(member)) for member in raw]
