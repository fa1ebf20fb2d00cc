"""Bypass detection: is an admin action in an IdP explained by what Deskgate recorded?

The helpdesk breaches of 2023 did not defeat a verification: an agent, talked into it, reset a
victim's MFA in the admin console. Every admin action the IdP logs (``IdpEvent``) on user U at
time T is judged against Deskgate's ledger for U (``worker.idp.ledger``):

- the user on themselves (the IdP's self-service flows): nothing to say;
- Deskgate's own call, or an action the ledger records for U (same action family within
  ``ACTION_WINDOW_SECONDS``, and the same request id when both sides have one): explained;
- a VERIFIED verification of U within ``verified_window_minutes`` before T whose reason allows
  the action (``[reasons."<reason>"] actions``; no mapping: any action): explained;
- a configured break-glass actor: reported as info (``idp.break_glass``), never as a bypass;
- anything else is a bypass: ``high`` after a failed, expired, error or refused verification of U
  within ``SUSPICIOUS_WINDOW_SECONDS``, or when U is privileged; ``medium`` otherwise.

A bypass becomes one audit event (``idp.bypass``; the metric and the SIEM follow from it) and an
internal note on U's newest ticket in the ledger, if that ticket is still open.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from config.privacy import mask_email, mask_phone
from connectors.identity_provider import Action, EventKind, IdentityProvider, IdpEvent
from connectors.ticketing import Desk
from worker.idp.ledger import IdpLedger, LedgerEntry
from worker.lifecycle.store import Store

log = structlog.get_logger("deskgate.bypass")

Severity = Literal["high", "medium", "info"]
Verdict = Literal["self_service", "own", "explained", "break_glass", "bypass"]

# The admin actions watched, by the action family Deskgate's grants and reasons name. A new
# factor or a Temporary Access Pass registered by an admin recovers MFA as a reset does.
FAMILY: dict[EventKind, Action] = {
    "reset_mfa": "reset_mfa",
    "method_registered": "reset_mfa",
    "temporary_access": "reset_mfa",
    "unlock": "unlock",
    "reset_password": "reset_password",
    "revoke_sessions": "revoke_sessions",
}
# What each action Deskgate performs leaves in the log: a reset also ends the user's sessions
# (Okta's reset_mfa is two calls, the factors then the sessions, and each has its own request
# id; a password reset revokes the sessions with it).
COVERS: dict[str, frozenset[Action]] = {
    "reset_mfa": frozenset({"reset_mfa", "revoke_sessions"}),
    "reset_password": frozenset({"reset_password", "revoke_sessions"}),
    "unlock": frozenset({"unlock"}),
    "revoke_sessions": frozenset({"revoke_sessions"}),
}
# How far apart Deskgate's recorded action and the IdP's log entry of it may be (the IdP's
# clock and ours; an action recorded as "unanswered" whose entry came minutes later).
ACTION_WINDOW_SECONDS = 300.0
# A failed (expired, error, refused) verification this recent makes an unexplained action high.
SUSPICIOUS_WINDOW_SECONDS = 86400.0
SUSPICIOUS_STATES = frozenset({"failed", "expired", "error", "refused"})
# How long a user's privilege and masked contact, re-read from the IdP, are reused.
USER_CACHE_SECONDS = 900


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    severity: Severity | None = None  # for bypass and break_glass
    why: str = ""
    newest: LedgerEntry | None = None  # the ledger's newest entry for the user: where to note


@dataclass(frozen=True)
class Rules:
    own_actors: frozenset[str]  # Deskgate's own client id(s) in this IdP
    break_glass: frozenset[str]
    verified_window: float  # seconds
    # reason -> the actions it allows; None: the reason maps none (any action)
    reason_actions: Callable[[str], frozenset[str] | None]


def reason_actions(settings: Any) -> Callable[[str], frozenset[str] | None]:
    """The settings' ``[reasons."<reason>"] actions``, read defensively: a deployment (or a
    branch) without the mapping lets a verified verification explain any action."""
    reasons = getattr(settings, "reasons", None)

    def allowed(reason: str) -> frozenset[str] | None:
        rule = reasons.get(reason) if isinstance(reasons, Mapping) else None
        actions = getattr(rule, "actions", None)
        return None if actions is None else frozenset(str(a) for a in actions)

    return allowed


def rules_for(settings: Any, idp: str) -> Rules:
    config = settings.idps[idp]
    client_id = getattr(config, "client_id", None)
    return Rules(
        own_actors=frozenset({client_id} if client_id else ()),
        break_glass=frozenset(config.break_glass_actors),
        verified_window=settings.verified_window_minutes * 60.0,
        reason_actions=reason_actions(settings),
    )


def watched(event: IdpEvent) -> bool:
    """An admin action on a user this module judges (not a profile change, not noise)."""
    return event.kind in FAMILY and event.target_id is not None


def _same_action(entry: LedgerEntry, event: IdpEvent, family: Action, own: bool) -> bool:
    """Whether the ledger's action ``entry`` is what ``event`` logged. ``own``: the event's
    actor is Deskgate's client id."""
    if entry.kind != "action":
        return False
    if event.request_id and entry.request_id and event.request_id == entry.request_id:
        return True  # Deskgate's very call (an Okta reset also logs its session clear)
    covered = family in COVERS.get(entry.action, frozenset())
    near = covered and abs(entry.at - event.at) <= ACTION_WINDOW_SECONDS
    # Okta logs the request id Deskgate kept; whether Entra's correlationId is the id Graph
    # answered is undocumented, so for Deskgate's own app the action, user and time decide.
    if event.request_id and entry.request_id and not own:
        return False  # both sides name their call, and they are different calls
    return near


def judge(event: IdpEvent, entries: list[LedgerEntry], rules: Rules) -> Judgement:
    """What ``event`` (``watched``) is, given the user's ledger ``entries`` up to a few minutes
    after it (oldest first; older ones are fine: each rule applies its own window). Privilege
    is the caller's: it raises a medium to high."""
    newest = entries[-1] if entries else None
    if event.self_service:
        return Judgement("self_service", newest=newest)
    family = FAMILY[event.kind]
    own = event.actor_id in rules.own_actors
    if any(_same_action(e, event, family, own) for e in entries):
        return Judgement("own" if own else "explained", why="an action Deskgate recorded")
    for entry in reversed(entries):
        if entry.kind != "verification" or entry.state != "verified":
            continue
        if not event.at - rules.verified_window <= entry.at <= event.at:
            continue
        allowed = rules.reason_actions(entry.reason)
        if allowed is None or family in allowed:
            return Judgement("explained", why="a verified verification", newest=newest)
    if event.actor_id is not None and event.actor_id in rules.break_glass:
        return Judgement("break_glass", "info", "a configured break-glass actor", newest)
    failed = [
        e
        for e in entries
        if e.kind == "verification"
        and e.state in SUSPICIOUS_STATES
        and event.at - SUSPICIOUS_WINDOW_SECONDS <= e.at <= event.at
    ]
    if failed:
        why = f"after a {failed[-1].state} verification of this user"
        return Judgement("bypass", "high", why, newest)
    if any(e.kind == "verification" for e in entries if e.at <= event.at):
        return Judgement("bypass", "medium", "no verified ticket explains it", newest)
    return Judgement("bypass", "medium", "no verification of this user", newest)


@dataclass(frozen=True)
class Target:
    privileged: bool
    contact: str  # masked: never the whole address


class Detector:
    """Judges one IdP's events and reports what it finds."""

    def __init__(
        self,
        idp_name: str,
        idp: IdentityProvider,
        store: Store,
        ledger: IdpLedger,
        rules: Rules,
        desks: Mapping[str, Desk],
    ) -> None:
        self.name = idp_name
        self.idp = idp
        self.store = store
        self.ledger = ledger
        self.rules = rules
        self.desks = desks

    def handle(self, event: IdpEvent, now: float) -> Judgement | None:
        """Judge ``event`` and report it (audit event, ticket note); None when not watched."""
        if not watched(event):
            return None
        assert event.target_id is not None
        # Everything the ledger keeps on the user (bounded by its retention): the windows are
        # judge's, and the newest entry names the ticket to note, however old.
        entries = self.ledger.entries(
            self.name, event.target_id, 0, event.at + ACTION_WINDOW_SECONDS
        )
        found = judge(event, entries, self.rules)
        if found.verdict not in ("bypass", "break_glass"):
            log.info(
                "idp action explained", idp=self.name, verdict=found.verdict, idp_event=event.id
            )
            return found
        target = self.target(event.target_id)
        if found.verdict == "bypass" and target.privileged and found.severity != "high":
            found = Judgement("bypass", "high", "the user is privileged", found.newest)
        noted = self.note(event, found) if found.verdict == "bypass" else None
        self.audit(event, found, target, noted, now)
        return found

    def target(self, user_id: str) -> Target:
        """The user's privilege and masked contact, re-read by id (cached a while)."""
        key = f"{self.store.prefix}:idplog:{self.name}:user:{user_id}"
        cached = self.store.redis.get(key)
        if cached:
            data = json.loads(cached)
            return Target(bool(data["privileged"]), str(data["contact"]))
        user = self.idp.find_user("id", user_id)
        if user is None:
            found = Target(False, "")
        elif user.email:
            found = Target(user.privileged, mask_email(user.email))
        else:
            found = Target(user.privileged, mask_phone(user.phone) if user.phone else "")
        payload = {"privileged": found.privileged, "contact": found.contact}
        self.store.redis.set(key, json.dumps(payload), ex=USER_CACHE_SECONDS)
        return found

    def note(self, event: IdpEvent, found: Judgement) -> LedgerEntry | None:
        """An internal note on the user's newest ticket in the ledger, if it is still open;
        returns the entry whose ticket was noted."""
        entry = found.newest
        desk = self.desks.get(entry.desk) if entry else None
        if entry is None or desk is None:
            return None
        try:
            ticket = desk.get_ticket(entry.ticket)
            if ticket is None or not ticket.active or not ticket.marker:
                return None
            # The ticket keeps its marker: the note is the only change.
            desk.record(ticket, ticket.marker, note_text(self.name, event, found), release=False)
        except Exception as exc:  # the audit event and the alert matter more than the note
            log.warning("bypass note not written", idp=self.name, desk=entry.desk, error=str(exc))
            return None
        return entry

    def audit(
        self,
        event: IdpEvent,
        found: Judgement,
        target: Target,
        noted: LedgerEntry | None,
        now: float,
    ) -> None:
        name = "idp.bypass" if found.verdict == "bypass" else "idp.break_glass"
        code = found.severity if found.verdict == "bypass" else "break_glass"
        # Appended on the audit chain like every event (``Store.ticket_event``): a bypass that
        # someone deletes from Redis breaks the chain.
        self.store.ticket_event(
            name,
            code or "",
            now,
            {},
            desk=noted.desk if noted else "",
            ticket=noted.ticket if noted else "",
            destination=target.contact,
            detail=f"{event.raw_type} by {event.actor_id or 'an unknown actor'}: {found.why}",
            idp=self.name,
            actor=event.actor_id or "",
            target=event.target_id or "",
            action=FAMILY[event.kind],
            severity=found.severity or "",
            idp_event=event.id,
        )
        log.warning(
            "idp admin action not explained" if name == "idp.bypass" else "break-glass action",
            idp=self.name,
            severity=found.severity,
            action=FAMILY[event.kind],
            idp_event=event.id,
        )


def note_text(idp: str, event: IdpEvent, found: Judgement) -> str:
    return (
        f"Deskgate: an admin action in {idp} on this requester is not explained by a verified "
        f"ticket ({event.raw_type}, {found.severity} severity: {found.why}). IdP event "
        f"{event.id}. If you did not expect it, tell the security team before acting on this "
        "ticket."
    )
