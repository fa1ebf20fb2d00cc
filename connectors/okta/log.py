"""Reading Okta's System Log (``GET /api/v1/logs``) as Deskgate needs it.

Okta persists events some time after they happen, so the log is polled the way Okta documents
for it: ``since`` once, ascending, no ``until``; every answer then carries a ``next`` link (even
an empty one), and that link is the cursor: kept verbatim, it resumes exactly where the last
read ended, across restarts, without a gap or a double.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.identity_provider import ContactField, EventKind, IdpEvent

# The profile attributes behind Deskgate's contact fields (Okta's ``changedAttributes`` names).
ATTRIBUTES: dict[str, ContactField] = {"login": "login", "email": "email", "mobilePhone": "phone"}

KINDS: dict[str, EventKind] = {
    "user.mfa.factor.reset_all": "reset_mfa",
    "user.mfa.factor.deactivate": "reset_mfa",  # Identity Engine: one per factor on a reset
    "user.mfa.factor.activate": "method_registered",
    "user.account.unlock_by_admin": "unlock",
    "user.account.unlock": "unlock",
    "user.account.unlock_token": "unlock",
    "user.account.reset_password": "reset_password",
    "user.credential.forgot_password": "reset_password",
    "system.agent.ad.reset_user_password": "reset_password",
    "user.session.clear": "revoke_sessions",
    "user.account.update_primary_email": "contact_changed",
}
# Okta's own self-service flows: the user acting on themselves, whoever the actor names.
SELF_SERVICE_TYPES = frozenset(
    {"user.account.unlock", "user.account.unlock_token", "user.credential.forgot_password"}
)
# Actor types of an application (an OAuth service app such as Deskgate's, or an app instance).
APP_ACTORS = frozenset({"PublicClientApp", "AppInstance"})


def epoch(published: str) -> float:
    return datetime.fromisoformat(published.replace("Z", "+00:00")).timestamp()


def changed_fields(event: dict[str, Any]) -> tuple[ContactField, ...]:
    """The contact fields an event changed (profile updates name attributes, never values)."""
    kind = event.get("eventType")
    if kind == "user.account.update_primary_email":
        return ("email",)
    if kind not in ("user.account.update_profile", "user.privileged_account.update_profile"):
        return ()
    names = str(_debug(event).get("changedAttributes") or "").split(",")
    return tuple(dict.fromkeys(ATTRIBUTES[n.strip()] for n in names if n.strip() in ATTRIBUTES))


def user_target(event: dict[str, Any]) -> str | None:
    for target in event.get("target") or []:
        if isinstance(target, dict) and target.get("type") == "User":
            return str(target.get("id"))
    return None


def to_event(event: dict[str, Any]) -> IdpEvent:
    raw_type = str(event.get("eventType", ""))
    changed = changed_fields(event)
    kind: EventKind = "contact_changed" if changed else KINDS.get(raw_type, "other")
    actor = event.get("actor") or {}
    target = user_target(event)
    debug = _debug(event)
    actor_id = actor.get("id")
    self_service = raw_type in SELF_SERVICE_TYPES or (target is not None and actor_id == target)
    if str(debug.get("is_self_initiated", "")).lower() == "true":
        self_service = True
    request_id = debug.get("requestId") or (event.get("transaction") or {}).get("id")
    return IdpEvent(
        id=str(event["uuid"]),
        at=epoch(str(event["published"])),
        kind=kind,
        raw_type=raw_type,
        target_id=target,
        actor_id=str(actor_id) if actor_id else None,
        actor_is_app=actor.get("type") in APP_ACTORS,
        self_service=self_service,
        request_id=str(request_id) if request_id else None,
        changed=changed,
    )


def _debug(event: dict[str, Any]) -> dict[str, Any]:
    debug = (event.get("debugContext") or {}).get("debugData") or {}
    return debug if isinstance(debug, dict) else {}
