"""``deskgate explain <desk> <ticket>``: why a ticket did (or did not) get a verification link,
from what the desk shows (its flags), what the store holds (its verifications, the mark of a
request to Incode in flight, the link caps of its requester) and the audit trail (its events).

A diagnosis in plain English comes first, then the evidence. Nothing printed names a whole
e-mail address or phone number: the destinations are the masked ones Deskgate stored, the caps
are counted under the requester's keyed hash, and free text is scrubbed again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from config.privacy import scrub
from config.settings import DeskConfig
from connectors.ticketing import OPEN_MARKERS, Desk, Ticket
from worker import audit
from worker.lifecycle import FINAL, State
from worker.lifecycle.caps import LinkCap
from worker.lifecycle.identity import Unverifiable, identity_of
from worker.lifecycle.store import Store, Verification

TYPO_DISTANCE = 2  # a flag this close to a trigger (edits) is taken for a mistyped one
FLAG_PREFIX = "idv_"  # Deskgate's tags start so: one that is not a trigger is likely a typo


@dataclass
class Explanation:
    diagnosis: str
    evidence: dict[str, Any] = field(default_factory=dict)
    found: bool = True  # the ticket exists on the desk

    def as_json(self) -> str:
        return json.dumps({"diagnosis": self.diagnosis, **self.evidence}, indent=2)

    def as_text(self) -> str:
        lines = [self.diagnosis, ""]
        for section, value in self.evidence.items():
            lines.append(f"{section}:")
            rows = value if isinstance(value, list) else [value]
            if not rows:
                lines.append("  (none)")
            for row in rows:
                if isinstance(row, dict):
                    lines.append("  " + "  ".join(f"{k}={v}" for k, v in row.items() if v != ""))
                else:
                    lines.append(f"  {row}")
        return "\n".join(lines)


def distance(a: str, b: str) -> int:
    """Levenshtein's edit distance (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def near_misses(labels: Iterable[str], triggers: Iterable[str]) -> dict[str, str]:
    """Each flag that is not a trigger but looks like one, with the trigger it most resembles
    (a lone ``idv_`` flag with no close trigger is named with the nearest one all the same)."""
    triggers = list(triggers)
    found = {}
    for label in labels:
        if label in triggers or not triggers:
            continue
        nearest = min(triggers, key=lambda t: distance(label.lower(), t.lower()))
        close = distance(label.lower(), nearest.lower()) <= TYPO_DISTANCE and len(label) > 3
        if close or label.lower().startswith(FLAG_PREFIX):
            found[label] = nearest
    return found


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(seconds: float, now: float) -> str:
    age = max(0.0, now - seconds)
    if age < 120:
        return f"{age:.0f} s ago"
    if age < 7200:
        return f"{age / 60:.0f} min ago"
    return f"{age / 3600:.0f} h ago"


def explain(
    *,
    desk_name: str,
    config: DeskConfig,
    desk: Desk,
    store: Store,
    caps: LinkCap,
    quoted: str,
    now: float,
    poll_interval: int,
) -> Explanation:
    """The diagnosis of the ticket agents quote as ``quoted`` (``#42``, ``42``, ``INC0010001``
    or a ``sys_id``) on ``desk_name``."""
    ticket = desk.get_ticket(quoted.strip().removeprefix("#"))
    if ticket is None:
        return Explanation(f"No ticket {quoted!r} on desk {desk_name}.", found=False)
    misses = near_misses(ticket.labels, config.triggers)
    events = _events(store, desk_name, ticket.display_id)
    opened = store.open_for(desk_name, ticket.id)
    last_vid = next((e["verification"] for e in reversed(events) if e["verification"]), None)
    last = opened or (store.get(last_vid) if last_vid else None)
    asking = store.asking_since(desk_name, ticket.id)
    evidence: dict[str, Any] = {
        "ticket": {
            "desk": desk_name,
            "ticket": ticket.display_id,
            "id": ticket.id,
            "status": ticket.status,
            "open": ticket.active,
            "flagged_by": _trigger(ticket, config) or "",
            "reason": ticket.reason or "",
            "marker": ticket.marker or "",
            "flags": " ".join(ticket.labels),
            "triggers": " ".join(config.triggers),
        },
        "near_misses": [{"flag": k, "trigger": v} for k, v in misses.items()],
        "store": {
            "open_verification": opened.id if opened else "",
            "last_verification": _summary(last, now) if last else "",
            "asking_incode_since": _when(asking) if asking else "",
        },
        "link_caps": _caps(caps, desk, desk_name, ticket, config, now),
        "audit": [_event_row(e) for e in events],
    }
    diagnosis = _diagnose(ticket, config, last, events, misses, asking, now, poll_interval)
    return Explanation(scrub(diagnosis), evidence)


def _trigger(ticket: Ticket, config: DeskConfig) -> str | None:
    return next((t for t in config.triggers if t in ticket.labels), None)


def _events(store: Store, desk_name: str, display_id: str) -> list[audit.Event]:
    since, until = datetime.fromtimestamp(0, UTC), datetime.now(UTC)
    found = audit.read(store.redis, store.prefix, since, until, desk_name)
    return [e for e in found if e["ticket"] == display_id]


def _event_row(event: audit.Event) -> dict[str, str]:
    keys = ("time", "event", "state", "code", "origin", "destination", "detail")
    return {k: str(event.get(k) or "") for k in keys}


def _summary(v: Verification, now: float) -> dict[str, str]:
    return {
        "id": v.id,
        "state": v.state.value,
        "opened": f"{_when(v.created_at)} ({_ago(v.created_at, now)})",
        "destination": v.destination,
        "expires": _when(v.expires_at) if v.expires_at else "",
        "detail": scrub(v.detail),
    }


def _caps(
    caps: LinkCap, desk: Desk, desk_name: str, ticket: Ticket, config: DeskConfig, now: float
) -> list[dict[str, Any]] | str:
    """The requester's and the ticket's place under each cap, or why it cannot be counted."""
    try:
        who = identity_of(ticket.requester or desk.get_requester(ticket), config)
    except Unverifiable as exc:
        return f"not counted: {exc}"
    counted = caps.used(
        desk=desk_name,
        ticket_id=ticket.id,
        channel=config.channel,
        destination=who.destination or who.login_hint,
        config=config,
        now=now,
    )
    return [
        {"cap": f"{cap.scope} {cap.window}", "window_minutes": cap.window_minutes,
         "used": used, "limit": cap.limit, "reached": used >= cap.limit}
        for cap, used in counted
    ]  # fmt: skip


def _diagnose(
    ticket: Ticket,
    config: DeskConfig,
    last: Verification | None,
    events: list[audit.Event],
    misses: dict[str, str],
    asking: float,
    now: float,
    poll_interval: int,
) -> str:
    if last is not None and last.state not in FINAL:
        return _open(last, asking, now)
    if ticket.reason is None:
        if misses:
            flag, trigger = next(iter(misses.items()))
            return (
                f"Not flagged: the ticket carries {flag!r}, which is not a configured trigger; "
                f"did the agent mean {trigger!r}? (typo'd tag). Configured triggers: "
                f"{', '.join(config.triggers)}."
            )
        if last is not None:
            consumed = " The trigger came off with that outcome (consumed): flag the ticket again"
            return f"{_ended(last, events, now)}{consumed} to ask anew."
        return f"Not flagged: none of the triggers ({', '.join(config.triggers)}) is on it."
    if not ticket.active:
        return (
            f"No link: the ticket is solved or closed (status {ticket.status}); Deskgate does "
            "not verify closed tickets."
        )
    if last is not None and last.written and ticket.marker not in OPEN_MARKERS:
        return (
            f"{_ended(last, events, now)} The ticket is flagged again ({ticket.reason}): a new "
            f"verification starts with the desk's push or the next poll (every {poll_interval} "
            "s); if none has after that, check the push and beat with `deskgate doctor`."
        )
    if last is not None:
        return _ended(last, events, now)
    return (
        f"Flagged ({ticket.reason}) but no verification has started: the desk's push did not "
        f"arrive (push off, or refused: see the web app's log) and the poller has not found it "
        f"yet (it runs every {poll_interval} s; check beat with `deskgate doctor`)."
    )


def _open(v: Verification, asking: float, now: float) -> str:
    if v.state is State.REQUESTED:
        since = f" (asked {_ago(asking, now)})" if asking else ""
        return (
            f"Waiting for Incode's link: verification {v.id} opened {_ago(v.created_at, now)} "
            f"and Incode has not sent the link yet{since}."
        )
    if v.state is State.REVIEW:
        return f"Waiting for Incode's manual review of verification {v.id} ({v.result})."
    expires = f", valid until {_when(v.expires_at)}" if v.expires_at else ""
    return (
        f"Waiting for the employee: the link went to {v.destination or 'their contact'} "
        f"{_ago(v.sent_at or v.created_at, now)}{expires}; the ticket stays on hold until "
        "Incode has a result."
    )


def _ended(v: Verification, events: list[audit.Event], now: float) -> str:
    when = _ago(v.updated_at, now)
    if v.state is State.VERIFIED:
        return (
            f"Verified {when}: the employee of record passed Incode's check through the link "
            f"sent to {v.destination or 'their contact'}."
        )
    code = _code(v, events)
    why = audit.CODES.get(code, "")
    detail = f" {v.detail[:1].upper()}{v.detail[1:].rstrip('.')}." if v.detail else ""
    if v.state is State.ERROR:
        return f"No link: {why or 'the verification ended in error'} (ended {when}).{detail}"
    return f"Ended {v.state.value} {when}{': ' + why if why else ''}.{detail}"


def _code(v: Verification, events: list[audit.Event]) -> str:
    """The code of ``v``'s final event in the trail ("" if the trail no longer holds it)."""
    finals = (
        e["code"]
        for e in reversed(events)
        if e["verification"] == v.id and e["outcome"] and e["event"].startswith("verification.")
    )
    return next(finals, "")
