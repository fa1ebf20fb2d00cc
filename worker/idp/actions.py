"""The act step: a ticket asks for an identity provider (IdP) action (``Ticket.action_request``),
and Deskgate performs it once if a grant of the ticket's verified result allows it
(``worker.idp.grants``; docs/idp.md, "Grants").

Everything is checked again at the press: the grant is unused and unexpired, the ticket's
requester is the one verified, the requester is still the same IdP user and that user is still
active, and the reason allows the action. The grant is then reserved atomically (one press wins)
before the IdP is called. A call that never reached the IdP (told to wait, unreachable) lets the
reservation go and is tried again; one that may have reached it is never made twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import structlog

from config.privacy import mask_email
from config.settings import DeskConfig
from connectors.http import Fatal, Retriable, Unanswered
from connectors.identity_provider import ACTIONS, IdentityProvider, IdpUser
from connectors.ticketing import Desk, Ticket
from worker.idp.grants import Grant, Grants
from worker.idp.ledger import IdpLedger, LedgerEntry
from worker.lifecycle import notes
from worker.lifecycle.identity import Unverifiable, employee_of
from worker.runtime import Runtime

log = structlog.get_logger("deskgate.actions")

HEADLINE = "Deskgate identity provider action"
# An action as agents read it (and as the desk's macro or UI action is named).
LABELS = {
    "unlock": "Unlock account",
    "reset_mfa": "Reset MFA",
    "reset_password": "Reset password",
    "revoke_sessions": "Sign out everywhere",
}

# Writes ``note`` on the ticket and clears its request, re-reading it on a conflict.
Clear = Callable[[Desk, Ticket, str], Ticket]


def offer(v_reason: str, grant: Grant, desk: DeskConfig) -> str:
    """What the VERIFIED outcome note adds: which actions the agent may ask for, how (the desk's
    macro or UI action), until when."""
    if desk.kind == "zendesk":
        asks = ", ".join(
            f'"{LABELS[a]}" (the macro adding tag {desk.tag_prefix}do_{a})' for a in grant.actions
        )
    else:
        asks = ", ".join(f'"{LABELS[a]}"' for a in grant.actions) + " (the form's UI actions)"
    return (
        f"This {v_reason} may be done by Deskgate in {grant.idp!r}, once, until "
        f"{notes.when(grant.expires_at)}: ask for one of {asks}."
    )


class Act:
    def __init__(
        self, rt: Runtime, grants: Grants, ledger: IdpLedger, clock: Callable[[], float]
    ) -> None:
        self.rt = rt
        self.grants = grants
        self.ledger = ledger
        self.clock = clock

    def run(self, desk_name: str, desk: Desk, ticket: Ticket, clear: Clear) -> None:
        action = ticket.action_request or ""
        config = self.rt.settings.desks[desk_name]
        now = self.clock()
        agent = desk.requested_by(ticket, action) or "unknown"
        grant = self.grants.get(desk_name, ticket.id) if config.idp else None
        subject = grant or Grant(
            verification="", desk=desk_name, ticket_id=ticket.id,
            requester_id=ticket.requester_id or "", idp=config.idp or "", idp_user="",
            reason=ticket.reason or "", actions=(), opened_at=0.0, expires_at=0.0, state="",
        )  # fmt: skip
        subject = replace(subject, action=action, agent=agent)
        self.grants.audit("action.requested", subject, now, ticket=ticket.display_id)
        structlog.contextvars.bind_contextvars(action=action, agent=agent)
        if grant is None or action not in ACTIONS:
            self._refuse(desk, ticket, subject, "no_grant", clear)
            return
        idp = self.rt.idps[grant.idp]
        verdict = self.grants.reserve(grant, action, ticket.requester_id or "", agent, now)
        if verdict != "ok":
            self._refuse(desk, ticket, subject, verdict, clear)
            return
        try:
            user = self._same_user(idp, grant, desk, ticket, config)
        except Retriable:
            self.grants.release(grant)  # nothing was sent to act: try again later
            raise
        except Unverifiable as exc:
            self.grants.release(grant)
            self._refuse(desk, ticket, subject, exc.code, clear)
            return
        self._perform(idp, user, desk, ticket, subject, clear)

    def _same_user(
        self, idp: IdentityProvider, grant: Grant, desk: Desk, ticket: Ticket, config: DeskConfig
    ) -> IdpUser:
        """The requester, found in the IdP again now, is the verified IdP user and is active."""
        try:
            user = employee_of(idp, desk.get_requester(ticket), config)
        except Fatal as exc:
            raise Unverifiable("other_idp_user", str(exc)) from None
        except Unverifiable:
            raise Unverifiable("other_idp_user", "") from None
        if user.id != grant.idp_user:
            raise Unverifiable("other_idp_user", "")
        if not user.active:
            raise Unverifiable("idp_inactive", user.status)
        return user

    def _perform(
        self,
        idp: IdentityProvider,
        user: IdpUser,
        desk: Desk,
        ticket: Ticket,
        grant: Grant,
        clear: Clear,
    ) -> None:
        label = LABELS.get(grant.action, grant.action)
        contact = mask_email(user.email) if user.email else ""
        action = next(a for a in ACTIONS if a == grant.action)  # reserved: one of them
        try:
            done = idp.perform(user, action)
        except Unanswered:
            # It may have acted: the grant is used for good, and the note says so.
            now = self.clock()
            self.grants.used(grant, "unanswered", "", now)
            self._ledger(grant, now, "unanswered", "")
            self.grants.audit("action.failed", grant, now, "idp_unanswered", detail=contact)
            note = (
                f"{HEADLINE}: {label} was asked of {grant.idp!r}, which did not answer in time: "
                "it may have been done. Deskgate will not ask again; check the account in the "
                "identity provider's admin console."
            )
        except Retriable:
            self.grants.release(grant)  # told to wait, or never reached: the grant is kept
            raise
        except Fatal as exc:
            now = self.clock()
            self.grants.release(grant)
            self.grants.audit("action.failed", grant, now, "idp_refused", detail=contact)
            status = f"HTTP {exc.status}" if exc.status else "an error"
            note = (
                f"{HEADLINE}: {grant.idp!r} refused to {label.lower()} ({status}); nothing was "
                "done. The identity provider's admins can tell why (`deskgate doctor` checks "
                "Deskgate's permissions there); the grant stays open until "
                f"{notes.when(grant.expires_at)}."
            )
        else:
            now = self.clock()
            request_id = done.request_id or ""
            self.grants.used(grant, "done", request_id, now)
            self._ledger(grant, now, "done", request_id)
            self.grants.audit("action.done", grant, now, idp_request=request_id, detail=contact)
            log.info("idp action done", idp=grant.idp, request_id=request_id)
            note = (
                f"{HEADLINE}: {label} done in {grant.idp!r} for the verified employee "
                f"(asked by {grant.agent}; the IdP's request id {request_id or 'not given'}). "
                f"What to tell the employee, on their contact of record: {done.expect}"
            )
        clear(desk, ticket, f"{note}\n{notes.VERIFICATION_LINE} {grant.verification}\n"
                            f"{notes.SIGN_OFF}")  # fmt: skip

    def _ledger(self, grant: Grant, now: float, state: str, request_id: str) -> None:
        self.ledger.record(
            grant.idp,
            grant.idp_user,
            LedgerEntry(
                kind="action", at=now, desk=grant.desk, ticket=grant.ticket_id,
                verification=grant.verification, reason=grant.reason, state=state,
                action=grant.action, request_id=request_id,
            ),
        )  # fmt: skip

    def _refuse(self, desk: Desk, ticket: Ticket, grant: Grant, code: str, clear: Clear) -> None:
        """Nothing is done: the request is cleared with a note saying why."""
        self.grants.audit("grant.refused", grant, self.clock(), code, ticket=ticket.display_id)
        log.warning("idp action refused", code=code)
        why = {
            "no_grant": "no verified result of this ticket allows an action in an identity "
            "provider (flag the ticket for verification first)",
            "grant_expired": "the grant of the verified result ended at "
            f"{notes.when(grant.expires_at)}; flag the ticket again to verify anew",
            "grant_used": "the grant of this verification has already been used (or is being "
            "used now): Deskgate performs one action per verified result",
            "other_requester": "the ticket's requester is not the employee who was verified",
            "other_idp_user": f"the requester is no longer the {grant.idp!r} user who was verified",
            "idp_inactive": f"the verified employee's account in {grant.idp!r} is no longer active",
            "action_not_allowed": f"a verified result for a {grant.reason} allows only: "
            + (", ".join(LABELS[a] for a in grant.actions if a in LABELS) or "nothing"),
        }.get(code, code)
        label = LABELS.get(grant.action, grant.action or "the action")
        clear(desk, ticket, f"{HEADLINE}: {label} was not done: {why}.\n{notes.SIGN_OFF}")
