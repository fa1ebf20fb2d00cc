"""The audit trail's hash chain: every event carries ``prev`` (its predecessor's MAC) and ``mac``,
HMAC-SHA256 over the event's fields (``prev`` among them), keyed by the audit secret.

Redis's Lua has no HMAC, and handing it the key would put the key in Redis (its slow log keeps a
script's arguments). So the MAC is computed here, before the script that appends the event runs:
the script appends only if the chain's head (``<prefix>:audit:head``, the last MAC) is still the
``prev`` sealed in, and the record still gives the fields sealed in; otherwise it changes nothing
and says ``stale``, and the caller reads again and retries (``Store``). The transition and its
sealed event stay one atomic step, and concurrent workers append one after another, each on the
head the last one left. docs/audit.md says what this proves and what it cannot.

``Verifier`` reads entries oldest first and names the first broken link: ``mac mismatch`` (an
event's fields were edited), ``forged`` (an event with no MAC, or one the chain does not lead
through), ``missing predecessor`` (an event was deleted before this one), ``missing tail`` (the
head names an event the stream no longer holds). A first entry whose predecessor is gone is a
trimmed start (retention), not tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from redis import Redis

from config.settings import Settings

LABEL = b"deskgate audit chain"


def head_key(prefix: str) -> str:
    return f"{prefix}:audit:head"


class Chain:
    """The audit MAC's keys: the first seals, every one verifies (the rest are from before a
    rotation)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or not all(keys):
            raise ValueError("the audit chain needs a non-empty key")
        self._keys = list(keys)

    @classmethod
    def from_secrets(cls, audit_secrets: Sequence[str], note_secrets: Sequence[str]) -> Chain:
        """Keyed by ``audit_secret`` (and ``audit_previous_secret``) when set; else by
        ``note_secret`` (and its previous one), so a deployment without the new setting chains
        too. Either way the key is HMAC-SHA256 of a fixed label under the secret: a key no note
        seal shares, and the same one from the same secret whichever setting holds it."""
        secrets = audit_secrets or note_secrets
        if not secrets or not all(secrets):
            raise ValueError("the audit chain needs a non-empty secret")
        return cls([hmac.new(s.encode(), LABEL, hashlib.sha256).digest() for s in secrets])

    @classmethod
    def of(cls, settings: Settings) -> Chain:
        secrets = (settings.audit_secret, settings.audit_previous_secret)
        return cls.from_secrets([s.get_secret_value() for s in secrets if s], settings.note_secrets)

    def mac(self, fields: Mapping[str, str], key: int = 0) -> str:
        body = sorted((k, v) for k, v in fields.items() if k != "mac")
        message = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return hmac.new(self._keys[key], message, hashlib.sha256).hexdigest()

    def holds(self, fields: Mapping[str, str]) -> bool:
        """The entry's ``mac`` is right for its fields under one of the keys (constant time)."""
        given = fields.get("mac", "")
        return any(
            hmac.compare_digest(self.mac(fields, i), given) for i in range(len(self._keys))
        ) and bool(given)

    def seal(self, entry: Mapping[str, str], prev: str) -> str:
        """What the Lua ``audit_ready``/``audit_append`` take: the entry with its ``prev`` and
        ``mac``, as JSON (``cjson`` in the script)."""
        fields = {**entry, "prev": prev}
        fields["mac"] = mac = self.mac(fields)
        flat = [item for pair in fields.items() for item in pair]
        return json.dumps({"prev": prev, "mac": mac, "entry": flat})


# Lua, prepended to the scripts that append (after ``worker.audit.LUA``). ``sealed`` is
# ``Chain.seal``'s JSON, decoded. ``audit_ready(chain, record, changes, sealed)``: the chain's
# head is still ``sealed.prev`` and the record, with ``changes`` (field -> value this script is
# about to set) applied, still gives the record fields sealed in. Call it before changing
# anything: on false the script returns {'stale'}. ``audit_append(stream, chain, maxlen,
# sealed)`` appends the sealed entry and moves the head to its MAC.
LUA = """
local function audit_ready(chain, record, changes, sealed)
  if (redis.call('GET', chain) or '') ~= sealed.prev then return false end
  if not record then return true end
  local values = {}
  for i = 1, #sealed.entry, 2 do values[sealed.entry[i]] = sealed.entry[i + 1] end
  for _, pair in ipairs(RECORD_FIELDS) do
    local value = changes[pair[2]] or redis.call('HGET', record, pair[2]) or ''
    if values[pair[1]] ~= value then return false end
  end
  return true
end

local function audit_append(stream, chain, maxlen, sealed)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(sealed.entry))
  redis.call('SET', chain, sealed.mac)
  return sealed.entry
end

local function pairs_table(flat, from)
  local t = {}
  for i = from, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
"""


class ChainBusy(Exception):
    """The chain's head kept moving under this append (far more writers than it can take)."""


@dataclass(frozen=True)
class Break:
    stream_id: str
    event_id: str
    reason: str  # "mac mismatch", "forged", "missing predecessor", "missing tail"

    def __str__(self) -> str:
        return (
            f"{self.reason} at event {self.event_id or '(no id)'} (stream entry {self.stream_id})"
        )


class Verifier:
    """Checks entries fed oldest first in constant memory; ``broken`` is the first break.
    ``from_start``: the entries fed begin at the stream's first (a first entry with a
    predecessor is then a trimmed start); else they begin at a chosen time (``--since``)."""

    def __init__(self, chain: Chain, *, from_start: bool = True) -> None:
        self.chain = chain
        self.from_start = from_start
        self.checked = 0
        self.first_id = ""
        self.last_id = ""
        self.trimmed = False  # the first entry's predecessor was trimmed away
        # Entries from before the chain existed (no ``prev``, no ``mac``): allowed only ahead of
        # the first sealed one, counted, not checked.
        self.unsealed = 0
        self.broken: Break | None = None
        self._last_mac = ""
        self._suspect: tuple[str, str, str] | None = None  # (stream id, event id, mac)

    def feed(self, stream_id: str, fields: Mapping[str, str]) -> None:
        if self.broken:
            return
        self.last_id = stream_id
        if self._suspect:  # is the MAC that failed the one its successor names?
            self._settle_suspect(fields.get("prev", ""))
            return
        if not self.checked and "mac" not in fields and "prev" not in fields:
            self.unsealed += 1
            return
        self.checked += 1
        mac, prev = fields.get("mac", ""), fields.get("prev", "")
        if not mac:
            self.broken = Break(stream_id, fields.get("id", ""), "forged")
            return
        # The first sealed entry after unsealed ones must be the chain's very first.
        first = self.checked == 1 and not (self.unsealed and prev)
        in_place = first or hmac.compare_digest(prev, self._last_mac)
        if not self.chain.holds(fields):
            if in_place and mac != self._last_mac:  # an edit, if its successor names its MAC
                self._suspect = (stream_id, fields.get("id", ""), mac)
            else:  # not where the chain leads: added (or copied) in
                self.broken = Break(stream_id, fields.get("id", ""), "forged")
            return
        if self.checked == 1 and in_place:
            self.first_id = stream_id
            self.trimmed = self.from_start and prev != ""
        elif mac == self._last_mac:  # a copy of the event before it
            self.broken = Break(stream_id, fields.get("id", ""), "forged")
            return
        elif not in_place:
            self.broken = Break(stream_id, fields.get("id", ""), "missing predecessor")
            return
        self._last_mac = mac

    def finish(self, head: str) -> None:
        """The stream's end is reached and ``head`` is the chain's head as Redis holds it."""
        if self.broken:
            return
        if self._suspect:
            self._settle_suspect(head)
        elif self.checked and not hmac.compare_digest(head, self._last_mac):
            self.broken = Break(self.last_id, "", "missing tail")

    @property
    def at_head(self) -> str:
        """The MAC of the last entry that verified."""
        return self._last_mac

    @property
    def settled(self) -> bool:
        """No entry waits on its successor to tell an edit from a forgery."""
        return self._suspect is None

    def _settle_suspect(self, successor_prev: str) -> None:
        assert self._suspect is not None
        stream_id, event_id, mac = self._suspect
        linked = hmac.compare_digest(successor_prev, mac)
        self.broken = Break(stream_id, event_id, "mac mismatch" if linked else "forged")


def verify(
    redis: Redis[str],
    prefix: str,
    chain: Chain,
    *,
    since_ms: int | None = None,
    page: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> Verifier:
    """Check the whole stream (or from ``since_ms``) up to its head, ``page`` entries per XRANGE:
    memory stays constant however long the trail."""
    verifier = Verifier(chain, from_start=since_ms is None)
    stream = f"{prefix}:audit"
    start = "-" if since_ms is None else str(since_ms)
    head: str | None = None
    while True:
        batch = redis.xrange(stream, start, "+", count=page)
        for stream_id, fields in batch:
            verifier.feed(stream_id, fields)
        if batch:
            start = "(" + batch[-1][0]
            if progress:
                progress(verifier.checked)
        if verifier.broken or len(batch) == page:
            if verifier.broken:
                return verifier
            continue
        if head is not None and not batch:  # nothing appended since the head was read
            verifier.finish(head)
            return verifier
        # The head is read before the next XRANGE: an append adds its entry and moves the head
        # in one step, so whatever the head names by now, that XRANGE finds.
        head = redis.get(head_key(prefix)) or ""
        if verifier.at_head == head and verifier.settled:
            return verifier
