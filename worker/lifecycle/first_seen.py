"""When Deskgate first saw the value a requester's field holds, for the fields whose changes the
desk keeps no record Deskgate can read (Zendesk's ``external_id`` and user fields; a ServiceNow
instance where Deskgate may not read ``sys_audit``). Such a field is as old as Deskgate knows it
to be: never older than it is, so the contact-age check stays on the safe side. The cost: the
first time Deskgate sees a requester's value it cannot know its age, and the clock starts then.

Key (``p`` is the store's prefix): ``p:firstseen:<hash of desk, requester, field>``, a hash of
``v`` (the value's keyed hash: no employee number or address in Redis) and ``at`` (first seen,
epoch seconds). A different value restarts the clock. Entries live ``LEDGER_DAYS`` after the last
sighting. A rotated ``note_secret`` changes the hashes: an entry written under the previous
secret is carried over when its value still matches, so a rotation restarts no clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from worker.lifecycle.pseudonym import Pseudonyms

LEDGER_DAYS = 400

# KEYS: the entry under the current secret, then under previous secrets (if any)
# ARGV: now, ttl, the value's hash under the current secret, then under each previous secret
# Returns when the value was first seen.
_SEEN = """
local at = nil
local current = redis.call('HMGET', KEYS[1], 'v', 'at')
if current[1] then
  if current[1] == ARGV[3] then at = current[2] end
else
  for i = 2, #KEYS do
    local old = redis.call('HMGET', KEYS[i], 'v', 'at')
    if old[1] and old[1] == ARGV[2 + i] then at = old[2] break end
  end
end
if not at then at = ARGV[1] end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'at', at)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return at
"""


@dataclass(frozen=True)
class FirstSeen:
    redis: Redis[str]
    prefix: str
    hashes: Pseudonyms

    def since(self, desk: str, requester: str, field: str, value: str, now: float) -> float:
        """When Deskgate first saw ``value`` in this requester's ``field`` (now, if it never
        did or the value changed since), recording this sighting."""
        held = ("value", value.strip().lower())
        values = [self.hashes.of(*held), *self.hashes.previous(*held)]
        script = self.redis.register_script(_SEEN)
        at = script(
            keys=self.keys(desk, requester, field),
            args=[repr(now), LEDGER_DAYS * 86400, *values],
        )
        return float(at)

    def keys(self, desk: str, requester: str, field: str) -> list[str]:
        """The entry's key under the current secret, then under each previous one."""
        who = ("field", desk, requester, field)
        return [
            f"{self.prefix}:firstseen:{k}"
            for k in (self.hashes.of(*who), *self.hashes.previous(*who))
        ]
