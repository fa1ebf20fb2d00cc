"""A desk's cool-down after it says "slow down" (429, or 503 with Retry-After).

Zendesk and ServiceNow limit the whole account or integration user, not one request, so
``Retry-After`` is addressed to every task that calls the desk, not only to the one that was
told. The cool-down is a Redis key that lives as long as the server asked, so every thread of
every worker process sees it. A desk call made while it runs is not sent: it raises
``RateLimited`` with the time left, and the task reschedules itself (nothing sleeps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from redis import Redis

from config import metrics
from connectors.http import RateLimited
from connectors.identity_provider import (
    Action,
    ActionDone,
    ContactField,
    IdentityProvider,
    IdpEvent,
    IdpUser,
    Match,
)
from connectors.ticketing import Desk, Person, Ticket

T = TypeVar("T")

# Lengthen the cool-down, never shorten it: two 429s at once keep the later end. Returns the
# milliseconds added, so the desk's paused time is counted once however many workers were told.
_HOLD = """
local left = math.max(redis.call('PTTL', KEYS[1]), 0)
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
  return tonumber(ARGV[1]) - left
end
return 0
"""


class Pace:
    """Per-desk cool-downs, in Redis under ``<prefix>:pace:<desk>``."""

    def __init__(self, redis: Redis[str], prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._hold = redis.register_script(_HOLD)

    def _key(self, desk: str) -> str:
        return f"{self.prefix}:pace:{desk}"

    def remaining(self, desk: str) -> float:
        """Seconds left of the desk's cool-down (0: call away)."""
        left = int(self.redis.pttl(self._key(desk)))
        return left / 1000 if left > 0 else 0.0

    def hold(self, desk: str, seconds: float) -> float:
        """Hold the desk back ``seconds`` from now (unless it already is for longer); returns
        the seconds this added to its cool-down."""
        milliseconds = int(seconds * 1000)
        if milliseconds <= 0:
            return 0.0
        return int(self._hold(keys=[self._key(desk)], args=[milliseconds])) / 1000


class PacedDesk:
    """``desk`` with every call behind the desk's cool-down."""

    def __init__(self, desk: Desk, pace: Pace) -> None:
        self.desk = desk
        self.name = desk.name
        self.pace = pace

    def _call(self, call: Callable[[], T]) -> T:
        wait = self.pace.remaining(self.name)
        if wait > 0:
            raise RateLimited(self.name, wait)
        try:
            return call()
        except RateLimited as exc:
            metrics.rate_limited(self.name, self.pace.hold(self.name, exc.retry_after))
            raise

    def find_flagged(self, cursor: str | None, *, gated: bool) -> tuple[list[str], str | None]:
        return self._call(lambda: self.desk.find_flagged(cursor, gated=gated))

    def get_ticket(self, ticket_id: str) -> Ticket | None:
        return self._call(lambda: self.desk.get_ticket(ticket_id))

    def own_notes(self, ticket: Ticket, text: str) -> list[str]:
        return self._call(lambda: self.desk.own_notes(ticket, text))

    def changed_at(self, person: Person, field: str) -> float | None:
        return self._call(lambda: self.desk.changed_at(person, field))

    def get_requester(self, ticket: Ticket) -> Person | None:
        return self._call(lambda: self.desk.get_requester(ticket))

    def flagged_by(self, ticket: Ticket) -> str | None:
        return self._call(lambda: self.desk.flagged_by(ticket))

    def gate_lifted_by(self, ticket: Ticket) -> str | None:
        return self._call(lambda: self.desk.gate_lifted_by(ticket))

    def find_marked(self, marker: str, cursor: str | None) -> tuple[list[str], str]:
        return self._call(lambda: self.desk.find_marked(marker, cursor))

    def gate(self, ticket: Ticket, note: str) -> Ticket:
        return self._call(lambda: self.desk.gate(ticket, note))

    def record(self, ticket: Ticket, marker: str, note: str, *, release: bool) -> Ticket:
        return self._call(lambda: self.desk.record(ticket, marker, note, release=release))

    def requested_by(self, ticket: Ticket, action: str) -> str | None:
        return self._call(lambda: self.desk.requested_by(ticket, action))

    def clear_action(self, ticket: Ticket, note: str) -> Ticket:
        return self._call(lambda: self.desk.clear_action(ticket, note))

    def close(self) -> None:
        self.desk.close()


class PacedIdp:
    """``idp`` behind a cool-down of its own (``idp:<name>``): an IdP limits the whole org or
    tenant (Okta's per-minute buckets, Graph's throttling), so a 429 holds every worker back, as
    a desk's does."""

    def __init__(self, idp: IdentityProvider, pace: Pace) -> None:
        self.idp = idp
        self.name = idp.name
        self.actions = idp.actions
        self.pace = pace
        self.key = f"idp:{idp.name}"

    def _call(self, call: Callable[[], T]) -> T:
        wait = self.pace.remaining(self.key)
        if wait > 0:
            raise RateLimited(self.name, wait)
        try:
            return call()
        except RateLimited as exc:
            self.pace.hold(self.key, exc.retry_after)
            raise

    def find_user(self, match: Match, value: str) -> IdpUser | None:
        return self._call(lambda: self.idp.find_user(match, value))

    def changed_at(self, user: IdpUser, field: ContactField) -> float | None:
        return self._call(lambda: self.idp.changed_at(user, field))

    def perform(self, user: IdpUser, action: Action) -> ActionDone:
        return self._call(lambda: self.idp.perform(user, action))

    def read_log(self, cursor: str | None) -> tuple[list[IdpEvent], str]:
        return self._call(lambda: self.idp.read_log(cursor))

    def close(self) -> None:
        self.idp.close()
