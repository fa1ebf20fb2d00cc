"""Data-subject requests: ``deskgate privacy export|erase --person X`` (docs/privacy.md).

X is a desk requester (``<desk>:<requester id>``) or the e-mail address or phone number a link
went to. What Deskgate holds about that person:

- verification records (``p:v:<id>``) whose desk and requester match, or whose ``requester_key``
  (the keyed hash of the address: ``worker.lifecycle.caps``) is the address's under the current or a
  previous ``note_secret``;
- the audit events of those requesters and keys (``p:audit``);
- the link-cap entries under the address's keyed hash (``p:cap:who:<key>``);
- the first-seen ledger entries of the requester's deciding fields
  (``worker.lifecycle.first_seen``).

Export prints them as one JSON document. Erase deletes them: the records of verifications that
ended and whose outcome is on the ticket (with their indexes), the cap entries, the ledger
entries and the audit events. An open verification is left alone (its ticket is still held on
it) and reported, to be erased once it ends. A Redis stream entry cannot be rewritten in place,
so the person's audit events are deleted rather than pseudonymised; ``privacy.erased`` records
how many and which entry ids (no personal data), so a reader of the trail, or a chain over it,
can tell an erased entry from a lost one (``erased_entries``: the hook for that).

Both requests append an audit event (``privacy.exported``, ``privacy.erased``) whose
``requester_key`` is a keyed pseudonym of the person as given: two requests about one person
can be matched, the person cannot be read from them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from config.settings import Settings
from worker import audit
from worker.lifecycle.caps import LinkCap
from worker.lifecycle.first_seen import FirstSeen
from worker.lifecycle.identity import deciding_fields
from worker.lifecycle.pseudonym import Pseudonyms
from worker.lifecycle.store import Verification

PAGE = 500
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{5,}[0-9]")


class BadPerson(ValueError):
    """``--person`` names nobody Deskgate could look for; the message says what it takes."""


@dataclass(frozen=True)
class Person:
    given: str
    requesters: frozenset[tuple[str, str]]  # (desk, requester id)
    keys: frozenset[str]  # requester keys (link caps, records, audit events)


@dataclass
class Findings:
    verifications: list[dict[str, str]] = field(default_factory=list)
    events: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (stream id, entry)
    caps: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # key -> entries
    first_seen: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> entry


@dataclass(frozen=True)
class Privacy:
    redis: Redis[str]
    settings: Settings

    @property
    def prefix(self) -> str:
        return self.settings.key_prefix

    def person(self, given: str) -> Person:
        """Who ``given`` names: a desk requester, or an address (both its channels' keys)."""
        desk, colon, requester = given.partition(":")
        if colon and desk in self.settings.desks and requester:
            return Person(given, frozenset({(desk, requester)}), frozenset())
        caps = LinkCap(self.redis, self.prefix, Pseudonyms(self.settings.note_secrets, "requester"))
        if "@" in given:
            channel = "EMAIL"
        elif _PHONE.fullmatch(given.strip()):
            channel = "SMS"
        else:
            desks = ", ".join(self.settings.desks)
            raise BadPerson(
                f"{given!r} is neither a desk requester (<desk>:<requester id>, desks: {desks}) "
                "nor an e-mail address or phone number"
            )
        keys = [caps.requester_key(channel, given), *caps.previous_requester_keys(channel, given)]
        return Person(given.strip().lower(), frozenset(), frozenset(keys))

    def find(self, person: Person) -> Findings:
        found = Findings()
        requesters, keys = set(person.requesters), set(person.keys)
        for record in self._records():
            mine = (record.get("desk", ""), record.get("requester_id", "")) in requesters
            if mine or record.get("requester_key", "") in keys:
                found.verifications.append(record)
        # A verification found one way names the person the other way too.
        for record in found.verifications:
            requesters.add((record.get("desk", ""), record.get("requester_id", "")))
            if record.get("requester_key"):
                keys.add(record["requester_key"])
        for entry_id, entry in self._events():
            if (entry.get("desk", ""), entry.get("requester", "")) in requesters or (
                entry.get("requester_key") and entry["requester_key"] in keys
            ):
                found.events.append((entry_id, entry))
        for key in sorted(keys):
            name = f"{self.prefix}:cap:who:{key}"
            entries = self.redis.zrange(name, 0, -1, withscores=True)
            if entries:
                found.caps[name] = [(str(m), float(s)) for m, s in entries]
        for name in self._ledger_keys(requesters):
            entry = self.redis.hgetall(name)
            if entry:
                found.first_seen[name] = entry
        return found

    def export(self, person: Person, now: float | None = None) -> dict[str, Any]:
        found = self.find(person)
        self._record("privacy.exported", person, _counts(found), now)
        return {
            "person": person.given,
            "verifications": found.verifications,
            "audit_events": [audit.event_of(entry) for _, entry in found.events],
            "link_caps": [
                {
                    "key": name,
                    "verifications": [m for m, _ in entries],
                    "times": [audit.rfc3339(s) for _, s in entries],
                }
                for name, entries in found.caps.items()
            ],
            "first_seen": [
                {"key": name, "first_seen": audit.rfc3339(float(entry.get("at") or 0))}
                for name, entry in found.first_seen.items()
            ],
        }

    def erase(
        self, person: Person, dry_run: bool = False, now: float | None = None
    ) -> dict[str, Any]:
        found = self.find(person)
        erasable = [r for r in found.verifications if _finished(r)]
        kept = [r["id"] for r in found.verifications if not _finished(r)]
        # An open verification's events stay with it, to be erased once it ends.
        found.events = [(i, e) for i, e in found.events if e.get("verification") not in kept]
        plan: dict[str, Any] = {
            "verifications": [r["id"] for r in erasable],
            "open_verifications_kept": kept,
            "audit_events": [entry_id for entry_id, _ in found.events],
            "link_caps": sorted(found.caps),
            "first_seen": sorted(found.first_seen),
            "dry_run": dry_run,
        }
        if dry_run:
            return plan
        pipe = self.redis.pipeline(transaction=True)
        for record in erasable:
            self._drop_verification(pipe, record)
        for name in [*found.caps, *found.first_seen]:
            pipe.delete(name)
        if found.events:
            erase_audit_entries(pipe, audit.stream_key(self.prefix), plan["audit_events"])
        pipe.execute()
        counts = _counts(found) | {"kept open": len(kept)}
        self._record("privacy.erased", person, counts, now, erased_entries=plan["audit_events"])
        return plan

    # -- the pieces ----------------------------------------------------------------------

    def _records(self) -> Iterator[dict[str, str]]:
        names = self.redis.scan_iter(f"{self.prefix}:v:*", count=PAGE)
        batch: list[str] = []
        for name in names:
            batch.append(name)
            if len(batch) == PAGE:
                yield from self._read(batch)
                batch = []
        yield from self._read(batch)

    def _read(self, names: list[str]) -> Iterator[dict[str, str]]:
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(name)
        for record in pipe.execute():
            if record.get("id"):
                yield record

    def _events(self) -> Iterator[tuple[str, dict[str, str]]]:
        key, start = audit.stream_key(self.prefix), "-"
        while True:
            batch = self.redis.xrange(key, start, "+", count=PAGE)
            yield from batch
            if len(batch) < PAGE:
                return
            start = "(" + batch[-1][0]

    def _ledger_keys(self, requesters: set[tuple[str, str]]) -> list[str]:
        ledger = FirstSeen(
            self.redis, self.prefix, Pseudonyms(self.settings.note_secrets, "first seen")
        )
        names = []
        for desk, requester in sorted(requesters):
            config = self.settings.desks.get(desk)
            for name in deciding_fields(config) if config else ():
                names += ledger.keys(desk, requester, name)
        return names

    def _drop_verification(self, pipe: Any, record: dict[str, str]) -> None:
        vid, p = record["id"], self.prefix
        pipe.delete(f"{p}:v:{vid}", f"{p}:lock:{vid}")
        pipe.zrem(f"{p}:due", vid)
        for state in ("requested", "sent", "review"):
            pipe.zrem(f"{p}:state:{state}", vid)
        # Indexes that still name it (they expire with it otherwise): the session's, and the
        # ticket's open key if the record still owns it.
        if record.get("interview_id"):
            _delete_if(pipe, f"{p}:iv:{record['interview_id']}", vid)
        _delete_if(pipe, f"{p}:open:{record.get('desk', '')}:{record.get('ticket_id', '')}", vid)

    def _record(
        self,
        event: str,
        person: Person,
        counts: dict[str, int],
        now: float | None,
        erased_entries: list[str] | None = None,
    ) -> None:
        """The request's audit event: counts, never the person's data."""
        at = time.time() if now is None else now
        subject = Pseudonyms(self.settings.note_secrets, "data subject").of(person.given)
        detail = ", ".join(f"{n} {what}" for what, n in counts.items())
        if erased_entries:
            detail += "; erased_entries " + " ".join(erased_entries)
        entry = audit.entry(audit.head(event, at), {}, requester_key=subject, detail=detail)
        self.redis.xadd(
            audit.stream_key(self.prefix),
            dict(entry),
            maxlen=self.settings.audit_max_events,
            approximate=True,
        )


def erase_audit_entries(pipe: Any, stream: str, entry_ids: list[str]) -> None:
    """Delete the audit trail's entries ``entry_ids``: the one place the trail loses entries on
    purpose. A tamper-evident chain over the trail must re-link here (or accept the gaps the
    ``privacy.erased`` event lists in ``erased_entries``)."""
    pipe.xdel(stream, *entry_ids)


def _delete_if(pipe: Any, key: str, value: str) -> None:
    pipe.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
        "return 0",
        1,
        key,
        value,
    )


def _finished(record: dict[str, str]) -> bool:
    """Ended, and its outcome is on the ticket: nothing Deskgate still does needs it."""
    v = Verification.from_hash(record)
    return v.state.value in audit.FINAL_STATES and not v.unwritten


def _counts(found: Findings) -> dict[str, int]:
    return {
        "verifications": len(found.verifications),
        "audit events": len(found.events),
        "link cap sets": len(found.caps),
        "first-seen entries": len(found.first_seen),
    }
