"""Microsoft Entra ID through Microsoft Graph v1.0, app-only (``docs/idp.md``, "Entra ID").

Reads the employee by ``mail`` or ``userPrincipalName`` (then again by id, since searches are
eventually consistent), whether they hold a directory role or a configured group, and when a
contact last changed (the audit log); performs ``reset_mfa`` (delete the configured
authentication methods, the default one last) and ``revoke_sessions``. Entra has no unlock call
and every app-only password reset makes a secret nobody delivers, so neither is offered
(``docs/decisions.md``). Each action carries one ``client-request-id`` on all its calls, kept as
``ActionDone.request_id``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from connectors.entra import audit
from connectors.entra.config import EntraIdpConfig
from connectors.entra.token import GraphAuth
from connectors.http import Fatal, NotFound, json_body, new_client, request, same_origin
from connectors.identity_provider import (
    Action,
    ActionDone,
    ContactField,
    IdpEvent,
    IdpUser,
    Match,
)

USER_FIELDS = "id,userPrincipalName,mail,mobilePhone,accountEnabled,createdDateTime"
FILTERS: dict[Match, str] = {"email": "mail", "login": "userPrincipalName"}
CONTACTS: dict[ContactField, str] = {
    "login": "userPrincipalName",
    "email": "mail",
    "phone": "mobilePhone",
}
# An Entra object id. Graph also takes a UPN in the path, but a path reaches metrics' route
# labels and logs, where an address must not: users are searched by UPN, read by id.
OBJECT_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
MAX_PAGES = 20  # per read; the audit log's next read goes on from where this one stopped
AUDIT_PAGE = 500


def describe_error(response: httpx.Response) -> str:
    """Graph's body ``{"error": {"code", "message", "innerError"}}``: the code decides, the
    message explains. A 403 ``Authorization_RequestDenied`` is a missing permission, or a user
    in a restricted-management administrative unit."""
    error = response.json().get("error") or {}
    code = str(error.get("code") or "")
    inner = (error.get("innerError") or {}).get("code")
    text = f"{code}{f'/{inner}' if inner else ''}: {error.get('message', '')}"
    if code == "Authorization_RequestDenied":
        text += " (grant the app the permission with admin consent; a user in a restricted "
        text += "management administrative unit cannot be changed by an app)"
    return text


def _quoted(value: str) -> str:
    """An OData string literal: quotes doubled; control characters refused."""
    if any(ord(ch) < 32 for ch in value):
        raise Fatal("entra", "the value to look up holds control characters")
    return "'" + value.replace("'", "''") + "'"


class EntraConnector:
    actions: frozenset[Action] = frozenset({"reset_mfa", "revoke_sessions"})

    def __init__(
        self, name: str, config: EntraIdpConfig, timeout: float, deadline: float = 30.0
    ) -> None:
        self.name = name
        self.config = config
        self.system = f"entra:{name}"
        self.auth = GraphAuth(self.system, config, timeout, deadline)
        self.client = new_client(config.graph_base, timeout, deadline=deadline, auth=self.auth)

    def close(self) -> None:
        self.client.close()
        self.auth.close()

    def _call(
        self, method: str, url: str, request_id: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {
            "client-request-id": request_id or str(uuid.uuid4()),
            "return-client-request-id": "true",
        }
        return request(
            self.client, self.system, method, url, describe_error, headers=headers, **kwargs
        )

    def _get(self, url: str, **params: str) -> dict[str, Any]:
        return json_body(self.system, self._call("GET", url, params=params or None))

    def _pages(self, url: str, **params: str) -> Iterator[dict[str, Any]]:
        """Every item of a list, following ``@odata.nextLink`` (only on Graph's own origin)."""
        body = self._get(url, **params)
        for _ in range(MAX_PAGES):
            yield from body.get("value") or []
            link = body.get("@odata.nextLink")
            if not isinstance(link, str):
                return
            if not same_origin(link, self.config.graph_base):
                raise Fatal(self.system, "a next page link points off Graph's origin")
            body = self._get(link)
        raise Fatal(self.system, f"more than {MAX_PAGES} pages: narrow the query")

    # -- reading ---------------------------------------------------------------------------

    def find_user(self, match: Match, value: str) -> IdpUser | None:
        if match == "id":
            return self._by_id(value)
        query = f"{FILTERS[match]} eq {_quoted(value)}"
        found = self._get("/v1.0/users", **{"$filter": query, "$select": "id", "$top": "2"})
        rows = found.get("value") or []
        if len(rows) > 1 or found.get("@odata.nextLink"):
            raise Fatal(self.system, f"more than one user has that {FILTERS[match]}: not guessed")
        return self._by_id(str(rows[0]["id"])) if rows else None

    def _by_id(self, user_id: str) -> IdpUser | None:
        if not OBJECT_ID.fullmatch(user_id):  # nothing else reaches the path
            return None
        try:
            row = self._get(f"/v1.0/users/{user_id}", **{"$select": USER_FIELDS})
        except NotFound:
            return None
        because = self._privileged_because(str(row["id"]))
        enabled = row.get("accountEnabled") is True
        return IdpUser(
            id=str(row["id"]),
            login=str(row.get("userPrincipalName") or ""),
            email=row.get("mail") or None,
            phone=row.get("mobilePhone") or None,
            status="enabled" if enabled else "disabled",
            active=enabled,
            privileged=bool(because),
            privileged_because=because,
        )

    def _privileged_because(self, user_id: str) -> tuple[str, ...]:
        """Directory roles assigned to the user (any role counts: each one administers
        something), active directory roles among their memberships, and configured groups."""
        roles = self._pages(
            "/v1.0/roleManagement/directory/roleAssignments",
            **{"$filter": f"principalId eq {_quoted(user_id)}", "$expand": "roleDefinition"},
        )
        because = {
            str((r.get("roleDefinition") or {}).get("displayName") or r.get("roleDefinitionId"))
            for r in roles
        }
        groups = set(self.config.privileged_groups)
        for member in self._pages(f"/v1.0/users/{user_id}/memberOf"):
            name = str(member.get("displayName") or "")
            kind = member.get("@odata.type")
            if kind == "#microsoft.graph.directoryRole" or (
                kind == "#microsoft.graph.group" and name in groups
            ):
                because.add(name)
        return tuple(sorted(because))

    def changed_at(self, user: IdpUser, field: ContactField) -> float | None:
        """The newest ``Update user`` entry naming the field, if it logged the value the user
        has now (otherwise a later change is still on its way into the log: cannot tell). With
        none, the user's creation, if within the log's retention; else None."""
        now = time.time()
        since = now - self.config.audit_retention_days * 86400
        query = (
            f"targetResources/any(t: t/id eq {_quoted(user.id)}) and activityDisplayName eq "
            f"'Update user' and activityDateTime ge {audit.iso(since)}"
        )
        rows = self._pages(
            "/v1.0/auditLogs/directoryAudits", **{"$filter": query, "$top": str(AUDIT_PAGE)}
        )
        newest = max(
            (r for r in rows if field in audit.changed_fields(r)),
            key=lambda r: audit.instant(str(r["activityDateTime"])),
            default=None,
        )
        current = {"login": user.login, "email": user.email, "phone": user.phone}[field]
        if newest is not None:
            logged = audit.new_value(newest, field)
            if current and logged and current.lower() not in logged.lower():
                return None
            return audit.instant(str(newest["activityDateTime"]))
        row = self._get(f"/v1.0/users/{user.id}", **{"$select": "id,createdDateTime"})
        created = audit.instant(str(row.get("createdDateTime") or "1970-01-01T00:00:00Z"))
        return created if created >= since else None

    # -- acting ----------------------------------------------------------------------------

    def perform(self, user: IdpUser, action: Action) -> ActionDone:
        request_id = str(uuid.uuid4())
        if action == "reset_mfa":
            removed = self._reset_mfa(user, request_id)
            return ActionDone(
                action,
                request_id,
                f"{removed} sign-in method(s) were removed: "
                "at your next sign-in, Microsoft asks you to set up a new one.",
            )
        if action == "revoke_sessions":
            self._call("POST", f"/v1.0/users/{user.id}/revokeSignInSessions", request_id)
            return ActionDone(
                action,
                request_id,
                "You are signed out everywhere within a few "
                "minutes; sign in again with your password.",
            )
        raise Fatal(self.system, f"{action} is not supported by Entra ID (docs/decisions.md)")

    def _reset_mfa(self, user: IdpUser, request_id: str) -> int:
        """Delete every configured method. Graph refuses to delete the default method while
        others exist, and v1.0 cannot tell which is the default: a refused one goes to the back
        of the queue, once; refused again when it is the last, it is ``Fatal``."""
        listed = self._get(f"/v1.0/users/{user.id}/authentication/methods").get("value") or []
        queue: list[tuple[str, str, bool]] = []  # (type, id, already deferred)
        for method in listed:
            kind = str(method.get("@odata.type", "")).removeprefix("#microsoft.graph.")
            kind = kind.removesuffix("AuthenticationMethod")
            if kind in self.config.mfa_methods:
                queue.append((kind, str(method["id"]), False))
        if not queue:
            raise Fatal(self.system, "the user has none of the configured sign-in methods")
        removed = 0
        while queue:
            kind, method_id, deferred = queue.pop(0)
            url = f"/v1.0/users/{user.id}/authentication/{kind}Methods/{method_id}"
            try:
                self._call("DELETE", url, request_id)
            except NotFound:
                continue  # already gone
            except Fatal as exc:
                if exc.status != 400 or deferred or not queue:
                    raise
                queue.append((kind, method_id, True))  # the default: after the others
                continue
            removed += 1
        return removed

    # -- the audit log ---------------------------------------------------------------------

    def read_log(self, cursor: str | None) -> tuple[list[IdpEvent], str]:
        """Entries from the cursor's time less the overlap, oldest first; the new cursor is the
        time of this read (or of the last entry read, when the page limit cut the
        read short). Entries within the overlap come again: the caller drops ids it has seen."""
        now = time.time()
        if cursor is None:
            return [], audit.iso(now)
        since = audit.instant(cursor) - self.config.log_overlap_seconds
        # No upper bound: whatever is newer than ``now`` comes again in the next window.
        params = {
            "$filter": f"activityDateTime ge {audit.iso(since)}",
            "$orderby": "activityDateTime asc",
            "$top": str(AUDIT_PAGE),
        }
        events: list[IdpEvent] = []
        body = self._get("/v1.0/auditLogs/directoryAudits", **params)
        for _ in range(MAX_PAGES):
            events += [audit.event(e) for e in body.get("value") or []]
            link = body.get("@odata.nextLink")
            if not isinstance(link, str):
                return events, audit.iso(now)
            if not same_origin(link, self.config.graph_base):
                raise Fatal(self.system, "a next page link points off Graph's origin")
            body = self._get(link)
        # Cut short: go on from the last entry read (its second is read again, deduplicated).
        return events, audit.iso(events[-1].at + self.config.log_overlap_seconds)
