"""A cap on verification links: at most N per requester and per ticket in a sliding window, so
neither a person re-flagging a ticket nor a loop between automations can flood an employee.

Keys (``p`` is the store's prefix), sorted sets of verification ids scored by when Incode was
asked:

- ``p:cap:who:<sha256>``          the requester, as the destination the link goes to (hashed:
                                  no address in Redis keys), shared by every desk
- ``p:cap:ticket:<desk>:<ticket>`` the ticket

Counting and checking are one Lua script, so concurrent requests cannot both take the last
place. A verification is counted once: asking Incode again for it (a retried task) takes no
second place.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis

from config.settings import DeskConfig

# The longest window a desk may configure; older entries can never count, so they are pruned.
MAX_WINDOW_SECONDS = 10080 * 60

# KEYS: requester set, ticket set
# ARGV: now, window start (exclusive), prune before, member, ttl, requester limit, ticket limit
# Returns {1} when counted (or counted before), else {0, binding scope index, its entry's score}.
_TAKE = """
for i = 1, 2 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[3]) end
if redis.call('ZSCORE', KEYS[2], ARGV[4]) then return {1} end
local start = '(' .. ARGV[2]
local over, oldest = 0, nil
for i = 1, 2 do
  local limit = tonumber(ARGV[5 + i])
  local n = redis.call('ZCOUNT', KEYS[i], start, '+inf')
  if n >= limit then
    -- a place frees when the entry that puts us at the limit leaves the window; with both caps
    -- reached, the later of the two is when a link may go out
    local entry = redis.call('ZRANGEBYSCORE', KEYS[i], start, '+inf', 'WITHSCORES', 'LIMIT',
                             n - limit, 1)
    if oldest == nil or tonumber(entry[2]) > tonumber(oldest) then over, oldest = i, entry[2] end
  end
end
if over > 0 then return {0, over, oldest} end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[4])
  -- keys are shared by desks with different windows: only ever lengthen their life
  if redis.call('TTL', KEYS[i]) < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[i], ARGV[5]) end
end
return {1}
"""

_SCOPES = {1: "requester", 2: "ticket"}


class LinkCapReached(Exception):
    """Too many links already; the message tells an agent the cap and when to try again."""

    def __init__(self, scope: str, limit: int, window_minutes: int, retry_at: float) -> None:
        self.scope = scope
        self.limit = limit
        self.window_minutes = window_minutes
        self.retry_at = retry_at
        when = datetime.fromtimestamp(retry_at, UTC).strftime("%H:%M UTC on %Y-%m-%d")
        whom = "this requester" if scope == "requester" else "this ticket"
        super().__init__(
            f"the cap of {limit} verification links for {whom} in {_span(window_minutes)} is "
            f"reached; flag the ticket again after {when}"
        )


def _span(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def requester_key(channel: str, destination: str) -> str:
    """One employee is one key however the address is written (case, phone punctuation)."""
    value = destination.strip().lower()
    if channel == "SMS":
        value = re.sub(r"[^\d+]", "", value)
    return hashlib.sha256(f"{channel}:{value}".encode()).hexdigest()


@dataclass(frozen=True)
class LinkCap:
    redis: Redis[str]
    prefix: str

    def take(
        self,
        *,
        verification: str,
        desk: str,
        ticket_id: str,
        channel: str,
        destination: str,
        config: DeskConfig,
        now: float,
    ) -> None:
        """Count a link for ``verification``, or raise ``LinkCapReached`` counting nothing."""
        window = config.link_cap_window_minutes * 60
        script = self.redis.register_script(_TAKE)
        result = script(
            keys=[
                f"{self.prefix}:cap:who:{requester_key(channel, destination)}",
                f"{self.prefix}:cap:ticket:{desk}:{ticket_id}",
            ],
            args=[
                now,
                now - window,
                now - MAX_WINDOW_SECONDS,
                verification,
                window,
                config.max_links_per_requester,
                config.max_links_per_ticket,
            ],
        )
        if int(result[0]):
            return
        scope = _SCOPES[int(result[1])]
        limit = (
            config.max_links_per_requester if scope == "requester" else config.max_links_per_ticket
        )
        raise LinkCapReached(
            scope, limit, config.link_cap_window_minutes, float(result[2]) + window
        )
