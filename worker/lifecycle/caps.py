"""Caps on verification links, so neither a person re-flagging a ticket nor a loop between
automations can flood an employee: at most N per requester and per ticket in a short sliding
window (``link_cap_window_minutes``), and at most M per requester in a long one
(``link_cap_long_window_hours``), so a slow flood that stays under the short cap is capped too.

Keys (``p`` is the store's prefix), sorted sets of verification ids scored by when Incode was
asked:

- ``p:cap:who:<requester key>``    the requester, as the destination the link goes to (a keyed
                                   hash: no address in Redis keys), shared by every desk and by
                                   both windows
- ``p:cap:ticket:<desk>:<ticket>`` the ticket

Counting and checking are one Lua script, so concurrent requests cannot both take the last
place. A verification is counted once: asking Incode again for it (a retried task) takes no
second place.

A rotated ``note_secret`` changes the requester key. While the old secret is
``note_previous_secret``, the set under its key is moved into the current one the next time the
requester is counted, so a rotation resets no cap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis

from config.settings import DeskConfig
from worker.lifecycle.pseudonym import Pseudonyms

# The longest window a desk may configure; older entries can never count, so they are pruned.
MAX_WINDOW_SECONDS = 10080 * 60

# KEYS: requester set, ticket set, then the requester's sets under previous secrets
# ARGV: now, prune before, member, the two keys' TTLs, then per cap: its key (1 or 2), its
# window (s), its limit
# Returns {1} when counted (or counted before), else {0, binding cap's index, its entry's score}.
_TAKE = """
for i = 3, #KEYS do
  local old = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
  for j = 1, #old, 2 do redis.call('ZADD', KEYS[1], 'NX', old[j + 1], old[j]) end
  local ttl = redis.call('TTL', KEYS[i])
  if ttl > redis.call('TTL', KEYS[1]) then redis.call('EXPIRE', KEYS[1], ttl) end
  redis.call('DEL', KEYS[i])
end
for i = 1, 2 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[2]) end
if redis.call('ZSCORE', KEYS[2], ARGV[3]) then return {1} end
local now = tonumber(ARGV[1])
local over, score, free = 0, nil, nil
for c = 1, (#ARGV - 5) / 3 do
  local key = KEYS[tonumber(ARGV[3 + 3 * c])]
  local window, limit = tonumber(ARGV[4 + 3 * c]), tonumber(ARGV[5 + 3 * c])
  local start = '(' .. (now - window)
  local n = redis.call('ZCOUNT', key, start, '+inf')
  if n >= limit then
    -- a place frees when the entry that puts us at the limit leaves the window; with several
    -- caps reached, the latest of them is when a link may go out
    local entry = redis.call('ZRANGEBYSCORE', key, start, '+inf', 'WITHSCORES', 'LIMIT',
                             n - limit, 1)
    if free == nil or tonumber(entry[2]) + window > free then
      over, score, free = c, entry[2], tonumber(entry[2]) + window
    end
  end
end
if over > 0 then return {0, over, score} end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[3])
  -- keys are shared by desks with different windows: only ever lengthen their life
  local ttl = ARGV[3 + i]
  if redis.call('TTL', KEYS[i]) < tonumber(ttl) then redis.call('EXPIRE', KEYS[i], ttl) end
end
return {1}
"""


_KEYS = ("requester", "ticket")  # the script's KEYS, in order


@dataclass(frozen=True)
class Cap:
    scope: str  # "requester" or "ticket"
    window: str  # "short" or "long": the metric's label and the audit code's
    window_minutes: int
    limit: int


def caps_of(config: DeskConfig) -> tuple[Cap, ...]:
    return (
        Cap("requester", "short", config.link_cap_window_minutes, config.max_links_per_requester),
        Cap("ticket", "short", config.link_cap_window_minutes, config.max_links_per_ticket),
        Cap(
            "requester",
            "long",
            config.link_cap_long_window_hours * 60,
            config.max_links_per_requester_long,
        ),
    )


class LinkCapReached(Exception):
    """Too many links already; the message tells an agent the cap and when to try again."""

    def __init__(self, cap: Cap, retry_at: float) -> None:
        self.scope = cap.scope
        self.window = cap.window
        self.limit = cap.limit
        self.window_minutes = cap.window_minutes
        self.retry_at = retry_at
        when = datetime.fromtimestamp(retry_at, UTC).strftime("%H:%M UTC on %Y-%m-%d")
        whom = "this requester" if cap.scope == "requester" else "this ticket"
        super().__init__(
            f"the cap of {cap.limit} verification links for {whom} in "
            f"{_span(cap.window_minutes)} is reached; flag the ticket again after {when}"
        )

    @property
    def code(self) -> str:
        """The audit code: ``link_cap`` (the short window) or ``link_cap_long``."""
        return "link_cap" if self.window == "short" else "link_cap_long"


def _normal(channel: str, destination: str) -> str:
    value = destination.strip().lower()
    return re.sub(r"[^\d+]", "", value) if channel == "SMS" else value


def _span(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True)
class LinkCap:
    redis: Redis[str]
    prefix: str
    hashes: Pseudonyms

    def requester_key(self, channel: str, destination: str) -> str:
        """One employee is one key however the address is written (case, phone punctuation).
        Keyed, so neither Redis nor the audit trail (which carries it, for a SIEM to group cap
        hits by person) gives an address or number away."""
        return self.hashes.of(channel, _normal(channel, destination))

    def previous_requester_keys(self, channel: str, destination: str) -> list[str]:
        """The requester's keys under previous secrets (``note_previous_secret``)."""
        return self.hashes.previous(channel, _normal(channel, destination))

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
        caps = caps_of(config)
        ttls = [max(c.window_minutes * 60 for c in caps if c.scope == s) for s in _KEYS]
        args: list[str | int | float] = [now, now - MAX_WINDOW_SECONDS, verification, *ttls]
        for cap in caps:
            args += [_KEYS.index(cap.scope) + 1, cap.window_minutes * 60, cap.limit]
        script = self.redis.register_script(_TAKE)
        who = f"{self.prefix}:cap:who:"
        result = script(
            keys=[
                *self._keys(desk, ticket_id, channel, destination),
                *(who + key for key in self.previous_requester_keys(channel, destination)),
            ],
            args=args,
        )
        if int(result[0]):
            return
        cap = caps[int(result[1]) - 1]
        raise LinkCapReached(cap, float(result[2]) + cap.window_minutes * 60)

    def used(
        self,
        *,
        desk: str,
        ticket_id: str,
        channel: str,
        destination: str,
        config: DeskConfig,
        now: float,
    ) -> list[tuple[Cap, int]]:
        """How many links each of ``config``'s caps counts now (read only: ``deskgate explain``)."""
        keys = self._keys(desk, ticket_id, channel, destination)
        counted = []
        for cap in caps_of(config):
            key = keys[_KEYS.index(cap.scope)]
            counted.append(
                (cap, self.redis.zcount(key, f"({now - cap.window_minutes * 60}", "+inf"))
            )
        return counted

    def _keys(self, desk: str, ticket_id: str, channel: str, destination: str) -> list[str]:
        """The requester's and the ticket's sets, in ``_KEYS`` order."""
        return [
            f"{self.prefix}:cap:who:{self.requester_key(channel, destination)}",
            f"{self.prefix}:cap:ticket:{desk}:{ticket_id}",
        ]
