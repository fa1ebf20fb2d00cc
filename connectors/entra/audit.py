"""Reading Entra's audit log (``directoryAudits``): an entry's time, and what it means to
Deskgate as an ``IdpEvent``.

Activity names are the ones Microsoft's audit-activity reference lists. How an ``Update user``
entry names a changed profile property is not documented for ``mail`` and ``mobilePhone``: the
directory's own names (``Mail``, ``Mobile``) are what exported logs show, and Graph's names are
accepted too, as is the ``Included Updated Properties`` summary entry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from connectors.identity_provider import ContactField, EventKind, IdpEvent

# activityDisplayName -> what it did. "Admin registered security info" is a Temporary Access
# Pass when its resultReason says so (below).
ACTIVITIES: dict[str, EventKind] = {
    "Admin deleted security info": "reset_mfa",
    "User deleted security info": "reset_mfa",
    "Delete FIDO2 security key(s)": "reset_mfa",
    "Delete Windows Hello for Business credential": "reset_mfa",
    "Delete passwordless phone sign-in credential": "reset_mfa",
    "Admin registered security info": "method_registered",
    "Admin updated security info": "method_registered",
    "User registered security info": "method_registered",
    "Update StsRefreshTokenValidFrom Timestamp": "revoke_sessions",
    "Reset user password": "reset_password",
    "Reset password (by admin)": "reset_password",
    "Reset password (self-service)": "reset_password",
    "Change user password": "reset_password",
    "Unlock user account (self-service)": "unlock",
}
# The names a modifiedProperties entry may give each contact field.
PROPERTY_NAMES: dict[ContactField, frozenset[str]] = {
    "login": frozenset({"userprincipalname"}),
    "email": frozenset({"mail", "email"}),
    "phone": frozenset({"mobile", "mobilephone"}),
}
SUMMARY = "included updated properties"


def instant(text: str) -> float:
    """Graph's DateTimeOffset (``2026-12-07T06:00:00.1234567Z``: up to 7 fractional digits)."""
    head, _, rest = text.strip().rstrip("Z").partition(".")
    when = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    digits = "".join(ch for ch in rest if ch.isdigit())
    return when + (float(f"0.{digits}") if digits else 0.0)


def iso(at: float) -> str:
    """A filter bound in the form ``activityDateTime`` compares with (UTC, whole seconds)."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_target(entry: dict[str, Any]) -> dict[str, Any] | None:
    targets = entry.get("targetResources") or []
    return next((t for t in targets if isinstance(t, dict) and t.get("type") == "User"), None)


def changed_fields(entry: dict[str, Any]) -> tuple[ContactField, ...]:
    """The contact fields an ``Update user`` entry changed, from its modifiedProperties."""
    target = user_target(entry) or {}
    names: set[str] = set()
    for prop in target.get("modifiedProperties") or []:
        name = str(prop.get("displayName") or "").lower()
        if name == SUMMARY:
            try:
                listed = json.loads(prop.get("newValue") or '""')
            except ValueError:
                listed = ""
            names.update(n.strip().lower() for n in str(listed).split(","))
        else:
            names.add(name)
    return tuple(f for f, known in PROPERTY_NAMES.items() if names & known)


def new_value(entry: dict[str, Any], field: ContactField) -> str:
    """The raw newValue the entry logged for ``field`` ('' when it logged none)."""
    target = user_target(entry) or {}
    for prop in target.get("modifiedProperties") or []:
        if str(prop.get("displayName") or "").lower() in PROPERTY_NAMES[field]:
            return str(prop.get("newValue") or "")
    return ""


def event(entry: dict[str, Any]) -> IdpEvent:
    activity = str(entry.get("activityDisplayName") or "")
    kind: EventKind = ACTIVITIES.get(activity, "other")
    reason = str(entry.get("resultReason") or "").lower()
    if activity == "Admin registered security info" and "temporary access pass" in reason:
        kind = "temporary_access"
    changed: tuple[ContactField, ...] = ()
    if activity == "Update user":
        changed = changed_fields(entry)
        kind = "contact_changed" if changed else "other"
    by = entry.get("initiatedBy") or {}
    app, user = by.get("app") or {}, by.get("user") or {}
    target = user_target(entry) or {}
    target_id = str(target.get("id") or "") or None
    actor_id = str(user.get("id") or app.get("appId") or "") or None
    return IdpEvent(
        id=str(entry["id"]),
        at=instant(str(entry["activityDateTime"])),
        kind=kind,
        raw_type=activity,
        target_id=target_id,
        actor_id=actor_id,
        actor_is_app=bool(app.get("appId")) and not user.get("id"),
        self_service="(self-service)" in activity
        or (bool(user.get("id")) and user.get("id") == target_id),
        request_id=str(entry.get("correlationId") or "") or None,
        changed=changed,
    )
