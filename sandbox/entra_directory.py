"""The Entra ID simulator's directory: users, their roles, groups and authentication methods, and
the audit log (``directoryAudits``) every change is written to, visible only after a delay.

Shapes follow Microsoft Graph v1.0's resources (user, unifiedRoleAssignment, group,
directoryRole, the ``*AuthenticationMethod`` types, directoryAudit). ``sandbox/entra.py`` serves
them; nothing here knows Flask. A refusal is a ``GraphError``: the status and code Graph
answers with.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# The password method's fixed id (Graph's authenticationMethods overview), and the phone
# methods' fixed ids by phoneType (phoneAuthenticationMethod).
PASSWORD_METHOD_ID = "28c10230-6103-485e-b985-444c60001490"
PHONE_IDS = {
    "mobile": "3179e48a-750b-4051-897c-87b9720928f7",
    "alternateMobile": "b6332ec1-7057-4abe-9331-3d72feddfe41",
    "office": "e37fc753-ff3b-4958-9484-eaa9425c82bc",
}
# Method type (the ``{type}Methods`` URL segment without "Methods", and the ``@odata.type``
# ``#microsoft.graph.{type}AuthenticationMethod``) -> the words the audit log's resultReason uses.
METHOD_TYPES = {
    "password": "password",
    "microsoftAuthenticator": "Microsoft Authenticator",
    "phone": "phone",
    "fido2": "FIDO2 security key",
    "softwareOath": "software OATH token",
    "email": "email",
    "windowsHelloForBusiness": "Windows Hello for Business",
    "temporaryAccessPass": "temporary access pass",
}
# Built-in directory roles (unifiedRoleDefinition ids are the roles' template ids).
ROLES = {
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "Authentication Administrator": "c4e39bd9-1100-46d3-8c65-fb160da0071f",
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "Security Administrator": "194ae4cb-b126-40b2-bd5b-6091b380977d",
}
# user.md: the properties a GET returns without $select.
DEFAULT_USER_PROPERTIES = (
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
)
USER_PROPERTIES = frozenset(
    {
        *DEFAULT_USER_PROPERTIES,
        "accountEnabled",
        "createdDateTime",
        "otherMails",
        "isManagementRestricted",
        "onPremisesSyncEnabled",
        "signInSessionsValidFromDateTime",
        "lastPasswordChangeDateTime",
    }
)
# The names "Update user" entries give the profile properties in modifiedProperties: the
# directory's own (AAD Graph) names, not Graph v1.0's. Microsoft does not document them for
# mail and mobilePhone; these are the ones exported logs show.
AUDIT_PROPERTY = {"mail": "Mail", "mobilePhone": "Mobile", "userPrincipalName": "UserPrincipalName"}


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def iso(at: float) -> str:
    """Graph's DateTimeOffset in UTC, as directoryAudit and user carry it."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return str(uuid.uuid4())


def new_method(spec: dict[str, Any], created: float | None = None) -> Method:
    """A method from ``{"type", ...detail}``; a phone's id is fixed by its ``phoneType``."""
    detail = {k: v for k, v in spec.items() if k not in ("type", "default")}
    kind = str(spec.get("type"))
    if kind not in METHOD_TYPES or kind == "password":
        raise GraphError(400, "badRequest", f"unknown method type {kind[:40]!r}")
    method_id = PHONE_IDS[detail.setdefault("phoneType", "mobile")] if kind == "phone" else None
    return Method(kind, method_id or new_id(), detail, created or time.time())


@dataclass
class Method:
    type: str  # a METHOD_TYPES key
    id: str
    detail: dict[str, Any] = field(default_factory=dict)  # phoneNumber, displayName...
    created: float = field(default_factory=time.time)

    def resource(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "@odata.type": f"#microsoft.graph.{self.type}AuthenticationMethod",
            "id": self.id,
            **self.detail,
        }
        if self.type != "phone":
            body["createdDateTime"] = iso(self.created)
        if self.type == "password":
            body["password"] = None  # never returned (passwordAuthenticationMethod)
        return body


@dataclass
class User:
    id: str
    upn: str
    display_name: str
    mail: str | None
    mobile: str | None
    enabled: bool = True
    created: float = field(default_factory=time.time)
    management_restricted: bool = False
    roles: list[str] = field(default_factory=list)  # ROLES keys
    groups: list[str] = field(default_factory=list)  # group display names
    methods: list[Method] = field(default_factory=list)
    default_method: str | None = None  # the id of the default sign-in method (not in v1.0)
    sessions_valid_from: float | None = None

    def resource(self) -> dict[str, Any]:
        given, _, surname = self.display_name.partition(" ")
        return {
            "id": self.id,
            "userPrincipalName": self.upn,
            "displayName": self.display_name,
            "givenName": given,
            "surname": surname or None,
            "mail": self.mail,
            "mobilePhone": self.mobile,
            "businessPhones": [],
            "jobTitle": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "accountEnabled": self.enabled,
            "createdDateTime": iso(self.created).split(".")[0] + "Z",
            "otherMails": [],
            "isManagementRestricted": self.management_restricted,
            "onPremisesSyncEnabled": None,
            "lastPasswordChangeDateTime": iso(self.created).split(".")[0] + "Z",
            "signInSessionsValidFromDateTime": iso(self.sessions_valid_from or self.created),
        }

    def method(self, method_id: str) -> Method | None:
        return next((m for m in self.methods if m.id == method_id), None)


@dataclass(frozen=True)
class Actor:
    """Who did something: an app (its client id and name) or a user (an admin, or the user)."""

    app_id: str | None = None
    app_name: str | None = None
    service_principal_id: str | None = None
    user: User | None = None

    def initiated_by(self) -> dict[str, Any]:
        # appIdentity / userIdentity: the side that did not act is null (directoryAudit).
        app = None
        if self.app_id:
            app = {
                "appId": self.app_id,
                "displayName": self.app_name,
                "servicePrincipalId": self.service_principal_id,
                "servicePrincipalName": None,
            }
        user = None
        if self.user is not None:
            user = {
                "id": self.user.id,
                "displayName": None,
                "userPrincipalName": self.user.upn,
                "ipAddress": "203.0.113.7",
            }
        return {"app": app, "user": user}


@dataclass
class Directory:
    """Everything the tenant holds. Thread-safe: the server is threaded."""

    audit_delay: float  # seconds before an audit entry shows in directoryAudits
    users: dict[str, User] = field(default_factory=dict)
    audits: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (visible at, entry)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def find(self, key: str) -> User | None:
        """By object id or userPrincipalName (case-insensitive, as Graph compares them)."""
        with self.lock:
            if key in self.users:
                return self.users[key]
            return next((u for u in self.users.values() if u.upn.lower() == key.lower()), None)

    def add(self, body: dict[str, Any], default_age_days: float) -> User:
        """A user as the control API describes one (``sandbox/entra.py``'s docstring)."""
        upn = str(body["upn"])
        age = float(body.get("created_days_ago", default_age_days))
        created = time.time() - age * 86400
        user = User(
            id=str(body.get("id") or new_id()), upn=upn,
            display_name=str(body.get("displayName") or upn.split("@")[0]),
            mail=body.get("mail", upn), mobile=body.get("mobilePhone"),
            enabled=bool(body.get("enabled", True)), created=created,
            management_restricted=bool(body.get("management_restricted", False)),
            roles=[r for r in body.get("roles", []) if r in ROLES],
            groups=[str(g) for g in body.get("groups", [])],
        )  # fmt: skip
        user.methods.append(Method("password", PASSWORD_METHOD_ID, created=created))
        for spec in body.get("methods", []):
            method = new_method(spec, created)
            user.methods.append(method)
            if spec.get("default"):
                user.default_method = method.id
        with self.lock:
            self.users[user.id] = user
        return user

    def remove_method(self, user: User, kind: str, method_id: str, actor: Actor) -> None:
        """Delete a method and log it. The default one cannot go while others exist
        (phoneAuthenticationMethod delete: "Cannot delete default method with other methods
        configured"); the password method cannot go at all."""
        if kind == "password":
            raise GraphError(400, "badRequest", "The password method cannot be deleted.")
        with self.lock:
            method = user.method(method_id)
            if method is None or method.type != kind:
                raise GraphError(404, "itemNotFound", "The requested method was not found.")
            others = [m for m in user.methods if m.type != "password" and m.id != method_id]
            if method_id == user.default_method and others:
                raise GraphError(400, "badRequest", "Cannot delete default method with other "
                                 "methods configured. Delete other methods first or change the "
                                 "default method.")  # fmt: skip
            user.methods.remove(method)
            if method_id == user.default_method:
                user.default_method = None
        who = "User" if actor.user is user else "Admin"
        self.log(actor, f"{who} deleted security info", "Authentication Methods", user,
                 reason=f"{who} deleted {METHOD_TYPES[kind]} method for user")  # fmt: skip

    def visible_audits(self, now: float) -> list[dict[str, Any]]:
        with self.lock:
            return [entry for at, entry in self.audits if at <= now]

    def log(
        self,
        actor: Actor,
        activity: str,
        service: str,
        target: User,
        *,
        reason: str = "",
        changed: Sequence[tuple[str, Any, Any]] = (),
        category: str = "UserManagement",
    ) -> dict[str, Any]:
        """Append a directoryAudit entry, visible ``audit_delay`` seconds from now. Whether its
        correlationId equals the caller's client-request-id is undocumented: here it never
        does, so nothing may rely on it."""
        now = time.time()
        modified: list[dict[str, Any]] = [
            {"displayName": name, "oldValue": json.dumps(old), "newValue": json.dumps(new)}
            for name, old, new in changed
        ]
        if changed:  # what Update user adds after the properties themselves
            names = ", ".join(name for name, _, _ in changed)
            modified.append(
                {
                    "displayName": "Included Updated Properties",
                    "oldValue": None,
                    "newValue": json.dumps(names),
                }
            )
        entry = {
            "id": f"Directory_{new_id()}",
            "category": category,
            "correlationId": new_id(),
            "result": "success",
            "resultReason": reason,
            "activityDisplayName": activity,
            "activityDateTime": iso(now),
            "loggedByService": service,
            "operationType": "Update" if changed else "Delete" if "deleted" in activity else "Add",
            "initiatedBy": actor.initiated_by(),
            "targetResources": [
                {
                    "id": target.id,
                    "displayName": None,
                    "type": "User",
                    "userPrincipalName": target.upn,
                    "groupType": None,
                    "modifiedProperties": modified,
                }
            ],
            "additionalDetails": [],
        }
        with self.lock:
            self.audits.append((now + self.audit_delay, entry))
        return entry
