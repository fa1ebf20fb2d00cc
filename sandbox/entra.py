"""Microsoft Entra ID simulator: the Microsoft identity platform's token endpoint and the
Microsoft Graph v1.0 calls Deskgate makes, as one real HTTP server (``login_url`` and
``graph_url`` both point here).

What it models, and where each behaviour comes from (Microsoft's documentation unless said):

- ``POST /{tenant}/oauth2/v2.0/token``: the client-credentials grant with ``client_secret`` or
  a certificate ``client_assertion`` (an RS256 JWT whose ``x5t`` header names the registered
  certificate's SHA-1 thumbprint, ``aud`` the token endpoint, ``iss`` = ``sub`` = the client
  id); ``scope`` must be ``https://graph.microsoft.com/.default``. Refusals are AADSTS bodies
  (``error``, ``error_description``, ``error_codes``, ``timestamp``, ``trace_id``,
  ``correlation_id``). The token is a JWT whose ``roles`` claim lists the application
  permissions granted (with admin consent) when it was issued, as Entra's app tokens do.
- Graph calls need the permission each API's page names (least privileged or a higher one);
  without it 403 ``Authorization_RequestDenied``. Users in a restricted-management
  administrative unit refuse every tenant-wide write the same way. Errors use Graph's body
  ``{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}``;
  every answer carries ``request-id`` and ``client-request-id`` (the caller's, echoed).
- ``GET /v1.0/users/{id|upn}`` (default property set without ``$select``; an unknown property is
  400), ``GET /v1.0/users?$filter=mail eq '…'`` (or ``userPrincipalName``/``id``; anything
  else 400 ``Request_UnsupportedQuery``), ``$top``, ``@odata.nextLink`` paging;
  ``GET /v1.0/users/{id}/memberOf`` (groups and directoryRole objects);
  ``GET /v1.0/roleManagement/directory/roleAssignments`` (``$filter`` on ``principalId`` is
  required; ``$expand=roleDefinition``).
- ``GET /v1.0/users/{id}/authentication/methods``; ``DELETE
  /v1.0/users/{id}/authentication/{type}Methods/{id}`` -> 204. Deleting the default method
  while other methods exist is 400 ``badRequest`` (phoneAuthenticationMethod delete); the
  password method cannot be deleted (400). Which method is the default is not readable in v1.0
  (only beta ``signInPreferences``), so the simulator does not expose it either.
- ``POST /v1.0/users/{id}/revokeSignInSessions`` -> ``200 {"value": true}`` (as documented;
  Microsoft's known-issues page says it should be 204).
- Throttling (Graph's throttling limits, identity and access): per app and tenant, a budget of
  requests (resource units) per 10 s, writes per 150 s, and for the reports API
  (``auditLogs``) 5 requests per 10 s. Over a budget: 429 with ``Retry-After``,
  ``x-ms-throttle-scope`` and ``x-ms-throttle-information``; past 80 % of one, answers carry
  ``x-ms-throttle-limit-percentage``. The budgets are configurable (small in tests).
- ``GET /v1.0/auditLogs/directoryAudits`` (``$filter`` on ``activityDateTime`` ge/le,
  ``targetResources/any(t: t/id eq '…')``, ``initiatedBy/app/appId``, ``initiatedBy/user/id``,
  ``activityDisplayName``, ``category``, ``loggedByService``, ``correlationId``, joined by
  ``and``; ``$orderby=activityDateTime [asc|desc]``, newest first by default; ``$top``;
  ``@odata.nextLink``). Every change, whoever made it (Deskgate's app, an admin in the portal,
  the user's self-service), is logged with the documented activity name and shows up only
  ``audit_delay_seconds`` later (Microsoft quoted 2 minutes p95, 5 minutes p99).

Modules: ``entra_directory`` (users, methods, the audit log), ``entra_token`` (the token
endpoint), ``entra_throttle``, ``entra_control`` (the control API).

Control API (beside ``sandbox.common``'s calls, faults and latency):
``POST /_sandbox/users`` creates a user (``upn``, ``displayName``, ``mail``, ``mobilePhone``,
``enabled``, ``created_days_ago``, ``management_restricted``, ``roles``, ``groups``,
``methods``: ``[{"type", "default", ...detail}]``) and answers it with its methods' ids;
``GET /_sandbox/users/{id}`` reads it back (methods, default, sessions); ``PATCH
/_sandbox/users/{id}`` changes its profile as an admin in the portal (``admin``: their UPN) or
as HR provisioning (no ``admin``), logged as ``Update user``; ``POST /_sandbox/portal`` plays an
admin in the portal (``admin``, ``user``, ``action``: ``delete_method`` with ``method``,
``create_tap``, ``reset_password``); ``POST /_sandbox/self_service`` the user on themselves
(``user``, ``action``: ``reset_password`` or ``register_method`` with ``method``);
``GET /_sandbox/audits`` every entry with when it becomes visible; ``PUT /_sandbox/apps/{id}``
sets an app's ``permissions`` or ``certificates``; ``PUT /_sandbox/throttle`` ``{"bucket",
"requests", "per_seconds"}`` (``requests`` null: no limit); ``PUT /_sandbox/audit_delay``
``{"seconds"}``; ``POST /_sandbox/reset`` forgets users and audits.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, g, jsonify, request

from sandbox import entra_control
from sandbox.common import CONTROL_PREFIX, Controls
from sandbox.entra_directory import (
    DEFAULT_USER_PROPERTIES,
    METHOD_TYPES,
    ROLES,
    USER_PROPERTIES,
    Directory,
    GraphError,
    User,
    iso,
    new_id,
)
from sandbox.entra_throttle import BUDGETS, Budget, Throttle
from sandbox.entra_token import GRAPH_SCOPE, App, Tokens, b64url, unb64url
from sandbox.options import Wiring
from sandbox.simulator import Simulator

__all__ = ["GRAPH_SCOPE", "SIMULATOR", "EntraSimConfig", "create_app"]

# What Deskgate's app is granted in the sandbox: the least privileged permission of each call.
DESKGATE_PERMISSIONS = frozenset(
    {
        "User.Read.All",
        "RoleManagement.Read.Directory",
        "UserAuthenticationMethod.ReadWrite.All",
        "User.RevokeSessions.All",
        "AuditLog.Read.All",
    }
)
# Each API's application permissions, least privileged first (its Graph reference page).
READ_USERS = ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All")
READ_ROLES = ("RoleManagement.Read.Directory", "RoleManagement.Read.All", "Directory.Read.All")
READ_METHODS = ("UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All")
WRITE_METHODS = ("UserAuthenticationMethod.ReadWrite.All",)
REVOKE = ("User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All")
READ_AUDITS = ("AuditLog.Read.All",)
DENIED = "Insufficient privileges to complete the operation."


@dataclass
class EntraSimConfig:
    tenant_id: str = "8f5c0e2a-3b4d-4e6f-9a1b-2c3d4e5f6a7b"
    client_id: str = "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    client_secret: str = "sandbox-entra-client-secret-0123"
    app_name: str = "Deskgate"
    permissions: frozenset[str] = DESKGATE_PERMISSIONS
    certificates: dict[str, str] = field(default_factory=dict)  # thumbprint -> public key PEM
    audit_delay_seconds: float = 120.0
    page_size: int = 100  # Graph's default page for users; tests make it small
    token_ttl_seconds: int = 3599
    budgets: dict[str, Budget] = field(default_factory=lambda: dict(BUDGETS))
    employees: frozenset[str] = frozenset()  # UPNs (= mail) seeded with two methods
    user_age_days: float = 30.0


def graph_error(status: int, code: str, message: str) -> Response:
    request_id = g.get("request_id") or new_id()
    inner = {"date": iso(time.time()).split(".")[0], "request-id": request_id,
             "client-request-id": g.get("client_request_id") or request_id}  # fmt: skip
    resp = jsonify({"error": {"code": code, "message": message, "innerError": inner}})
    resp.status_code = status
    return resp


def _literal(text: str) -> str:
    return text.replace("''", "'")


STRING = r"'((?:[^']|'')*)'"
USER_FILTER = re.compile(rf"^(mail|userPrincipalName|id) eq {STRING}$")
AUDIT_CLAUSES = {
    "target": re.compile(rf"^targetResources/any\((\w+):\s*\1/id eq {STRING}\)$"),
    "time": re.compile(r"^activityDateTime (ge|le) (\d{4}-\d\d-\d\dT[\d:.]+Z)$"),
    "field": re.compile(
        rf"^(initiatedBy/app/appId|initiatedBy/user/id|activityDisplayName|category"
        rf"|loggedByService|correlationId) eq {STRING}$"
    ),
}
Entry = dict[str, Any]


def _instant(text: str) -> float:
    head, _, fraction = text.rstrip("Z").partition(".")
    at = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return at + (float(f"0.{fraction}") if fraction else 0.0)


def _dig(entry: Entry, path: list[str]) -> Any:
    value: Any = entry
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _clause(clause: str) -> Callable[[Entry], bool]:
    """One ``and``-joined clause of a directoryAudits ``$filter`` as a test of an entry."""
    if m := AUDIT_CLAUSES["target"].match(clause):
        target = _literal(m[2])
        return lambda e: any(t["id"] == target for t in e["targetResources"])
    if m := AUDIT_CLAUSES["time"].match(clause):
        bound = _instant(m[2])
        if m[1] == "ge":
            return lambda e: _instant(e["activityDateTime"]) >= bound
        return lambda e: _instant(e["activityDateTime"]) <= bound
    if m := AUDIT_CLAUSES["field"].match(clause):
        path, wanted = m[1].split("/"), _literal(m[2])
        return lambda e: _dig(e, path) == wanted
    raise GraphError(400, "Request_UnsupportedQuery", f"Invalid filter clause: {clause[:80]}")


def _audit_filter(text: str) -> Callable[[Entry], bool]:
    tests = [_clause(c.strip()) for c in re.split(r"\s+and\s+", text.strip()) if c.strip()]
    return lambda entry: all(t(entry) for t in tests)


def _name_id(name: str) -> str:
    """A stable GUID-shaped id for a named object (a group, a role assignment)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"


def _select(resource: dict[str, Any]) -> dict[str, Any]:
    wanted = request.args.get("$select")
    names = [n.strip() for n in wanted.split(",")] if wanted else list(DEFAULT_USER_PROPERTIES)
    for name in names:
        if name not in USER_PROPERTIES:
            raise GraphError(400, "BadRequest", "Parsing OData Select and Expand failed: Could "
                             f"not find a property named '{name[:40]}' on type "
                             "'microsoft.graph.user'.")  # fmt: skip
    return {n: resource[n] for n in names}


def _context(what: str) -> str:
    return f"{request.host_url}v1.0/$metadata#{what}"


def create_app(config: EntraSimConfig | None = None) -> Flask:
    config = config or EntraSimConfig()
    app = Flask("sandbox-entra")
    directory = Directory(config.audit_delay_seconds)
    certificates = {k.lower(): v for k, v in config.certificates.items()}
    deskgate = App(config.client_id, config.app_name, config.client_secret, config.permissions,
                   certificates)  # fmt: skip
    tokens = Tokens(config.tenant_id, {config.client_id: deskgate}, config.token_ttl_seconds)
    throttle = Throttle(config.budgets)
    app.extensions["entra_directory"] = directory
    Controls("entra", lambda status, text: graph_error(status, "TooManyRequests", text)).install(
        app
    )
    entra_control.install(app, directory, tokens, throttle, config.user_age_days)

    @app.errorhandler(GraphError)
    def _graph_error(exc: GraphError) -> Response:
        return graph_error(exc.status, exc.code, exc.message)

    @app.after_request
    def _ids(response: Response) -> Response:
        if request.path.startswith("/v1.0/"):
            request_id = g.get("request_id") or new_id()
            response.headers["request-id"] = request_id
            response.headers["client-request-id"] = g.get("client_request_id") or request_id
        return response

    @app.post("/<tenant>/oauth2/v2.0/token")
    def token(tenant: str) -> Response:
        return tokens.issue(tenant, request.form, f"{request.host_url}{tenant}/oauth2/v2.0/token")

    def _throttled(caller: App, write: bool, reports: bool) -> Response | float:
        buckets = ["requests", *(["writes"] if write else []), *(["reports"] if reports else [])]
        taken = throttle.take(buckets, caller.client_id)
        if not isinstance(taken, tuple):
            return taken
        bucket, wait = taken
        resp = graph_error(429, "TooManyRequests", "Too many requests.")
        resp.headers["Retry-After"] = str(wait)
        scope = "ReadWrite" if write else "Read"
        resp.headers["x-ms-throttle-scope"] = (
            f"Tenant_Application/{scope}/{caller.client_id}/{config.tenant_id}"
        )
        resp.headers["x-ms-throttle-information"] = (
            "WriteLimitExceeded" if bucket == "writes" else "ResourceUnitLimitExceeded"
        )
        return resp

    def graph(
        permissions: tuple[str, ...], *, reports: bool = False
    ) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        """A Graph call: its ids, the caller's token, the throttle, then the permission."""

        def wrap(view: Callable[..., Response]) -> Callable[..., Response]:
            @wraps(view)
            def run(**kwargs: Any) -> Response:
                g.request_id = new_id()
                g.client_request_id = request.headers.get("client-request-id") or g.request_id
                caller, roles = tokens.caller(request.headers.get("Authorization", ""))
                write = request.method in ("POST", "PATCH", "PUT", "DELETE")
                taken = _throttled(caller, write, reports)
                if isinstance(taken, Response):
                    return taken
                if not roles & set(permissions):
                    raise GraphError(403, "Authorization_RequestDenied", DENIED)
                g.caller = caller
                resp = view(**kwargs)
                resp.headers["x-ms-resource-unit"] = "1"
                if taken >= 0.8:  # the header shows only past 80 % of a budget
                    resp.headers["x-ms-throttle-limit-percentage"] = f"{taken:.1f}"
                return resp

            return run

        return wrap

    def _user(key: str) -> User:
        user = directory.find(key)
        if user is None:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{key[:60]}' does not "
                             "exist or one of its queried reference-property objects are not "
                             "present.")  # fmt: skip
        return user

    def _writable(user: User) -> None:
        if user.management_restricted:  # tenant-wide app permissions do not reach into it
            raise GraphError(403, "Authorization_RequestDenied", DENIED)

    def _page(items: list[Entry], context: str, limit: int = 999) -> Response:
        try:
            top = int(request.args.get("$top") or config.page_size)
            start = int(unb64url(request.args.get("$skiptoken", "")) or 0)
        except ValueError:
            raise GraphError(400, "BadRequest", "Invalid $top or $skiptoken.") from None
        if not 1 <= top <= limit:
            raise GraphError(400, "BadRequest", f"Invalid page size specified: '{top}'.")
        body: dict[str, Any] = {"@odata.context": _context(context),
                                "value": items[start : start + top]}  # fmt: skip
        if start + top < len(items):
            args = {k: v for k, v in request.args.items() if k != "$skiptoken"}
            args["$skiptoken"] = b64url(str(start + top).encode())
            body["@odata.nextLink"] = f"{request.base_url}?{urlencode(args)}"
        return jsonify(body)

    # -- users, roles, groups ----------------------------------------------------------------

    @app.get("/v1.0/users/<key>")
    @graph(READ_USERS)
    def get_user(key: str) -> Response:
        return jsonify({"@odata.context": _context("users/$entity"),
                        **_select(_user(key).resource())})  # fmt: skip

    @app.get("/v1.0/users")
    @graph(READ_USERS)
    def list_users() -> Response:
        found = list(directory.users.values())
        text = request.args.get("$filter")
        if text is not None:
            m = USER_FILTER.match(text.strip())
            if m is None:
                unsupported = "Unsupported or invalid query filter clause specified."
                raise GraphError(400, "Request_UnsupportedQuery", unsupported)
            attr = {"mail": "mail", "userPrincipalName": "upn", "id": "id"}[m[1]]
            value = _literal(m[2]).lower()  # directory strings compare case-insensitively
            found = [u for u in found if (getattr(u, attr) or "").lower() == value]
        return _page([_select(u.resource()) for u in found], "users")

    @app.get("/v1.0/users/<key>/memberOf")
    @graph(READ_USERS)
    def member_of(key: str) -> Response:
        user = _user(key)
        groups: list[Entry] = [
            {"@odata.type": "#microsoft.graph.group", "id": _name_id(name), "displayName": name,
             "securityEnabled": True, "mailEnabled": False}
            for name in user.groups
        ]  # fmt: skip
        roles = [
            {"@odata.type": "#microsoft.graph.directoryRole", "id": _name_id(f"role:{r}"),
             "displayName": r, "roleTemplateId": ROLES[r]}
            for r in user.roles
        ]  # fmt: skip
        return _page(groups + roles, "directoryObjects")

    @app.get("/v1.0/roleManagement/directory/roleAssignments")
    @graph(READ_ROLES)
    def role_assignments() -> Response:
        m = re.fullmatch(rf"principalId eq {STRING}", request.args.get("$filter", "").strip())
        if m is None:  # the directory provider answers only filtered lists
            raise GraphError(400, "BadRequest", "A filter on principalId is required.")
        expand = request.args.get("$expand")
        if expand not in (None, "roleDefinition"):
            raise GraphError(400, "BadRequest", f"Unsupported $expand: {expand[:40]}")
        user = directory.find(_literal(m[1]))
        rows: list[Entry] = []
        for role in user.roles if user else ():
            row: Entry = {"id": _name_id(f"{m[1]}:{role}"), "principalId": m[1],
                          "roleDefinitionId": ROLES[role], "directoryScopeId": "/"}  # fmt: skip
            if expand:
                row["roleDefinition"] = {"id": ROLES[role], "displayName": role,
                                         "templateId": ROLES[role], "isBuiltIn": True}  # fmt: skip
            rows.append(row)
        return _page(rows, "roleManagement/directory/roleAssignments")

    # -- authentication methods and sessions -------------------------------------------------

    @app.get("/v1.0/users/<key>/authentication/methods")
    @graph(READ_METHODS)
    def list_methods(key: str) -> Response:
        user = _user(key)
        return jsonify({"@odata.context": _context(f"users('{user.id}')/authentication/methods"),
                        "value": [m.resource() for m in user.methods]})  # fmt: skip

    @app.delete("/v1.0/users/<key>/authentication/<segment>/<method_id>")
    @graph(WRITE_METHODS)
    def delete_method(key: str, segment: str, method_id: str) -> Response:
        user = _user(key)
        kind = segment.removesuffix("Methods")
        if not segment.endswith("Methods") or kind not in METHOD_TYPES:
            raise GraphError(400, "badRequest", f"Resource not found for the segment "
                             f"'{segment[:40]}'.")  # fmt: skip
        if kind != "password":
            _writable(user)
        directory.remove_method(user, kind, method_id, g.caller.actor())
        return Response(status=204)

    @app.post("/v1.0/users/<key>/revokeSignInSessions")
    @graph(REVOKE)
    def revoke(key: str) -> Response:
        user = _user(key)
        _writable(user)
        old, user.sessions_valid_from = user.sessions_valid_from or user.created, time.time()
        directory.log(g.caller.actor(), "Update StsRefreshTokenValidFrom Timestamp",
                      "Core Directory", user,
                      changed=[("StsRefreshTokensValidFrom", [iso(old)],
                                [iso(user.sessions_valid_from)])])  # fmt: skip
        return jsonify({"@odata.context": _context("Edm.Boolean"), "value": True})

    # -- the audit log -----------------------------------------------------------------------

    @app.get("/v1.0/auditLogs/directoryAudits")
    @graph(READ_AUDITS, reports=True)
    def directory_audits() -> Response:
        keep = _audit_filter(request.args.get("$filter", ""))
        order = (request.args.get("$orderby") or "activityDateTime desc").split()
        if order[0] != "activityDateTime" or order[1:] not in ([], ["asc"], ["desc"]):
            raise GraphError(400, "BadRequest", "Only activityDateTime may order the list.")
        rows = [e for e in directory.visible_audits(time.time()) if keep(e)]
        # Newest first unless ordered; an $orderby without a direction is ascending (OData).
        newest_first = "$orderby" not in request.args or order[1:] == ["desc"]
        rows.sort(key=lambda e: (e["activityDateTime"], e["id"]), reverse=newest_first)
        return _page(rows, "auditLogs/directoryAudits", limit=1000)

    for upn in sorted(config.employees):
        directory.add({"upn": upn, "mobilePhone": "+1 2065550100", "methods": [
            {"type": "microsoftAuthenticator", "displayName": "Phone", "default": True},
            {"type": "phone", "phoneNumber": "+1 2065550100"},
        ]}, config.user_age_days)  # fmt: skip
    return app


# -- how the sandbox runs it ---------------------------------------------------------------

IDP_NAME = "acme_entra"


def _app_config(wiring: Wiring) -> EntraSimConfig:
    return EntraSimConfig(
        employees=wiring.options.employees, user_age_days=wiring.options.user_age_days
    )


def _config_text(wiring: Wiring) -> str:
    c = EntraSimConfig
    return f"""[idps.{IDP_NAME}]
kind = "entra"
tenant_id = "{c.tenant_id}"
client_id = "{c.client_id}"
graph_url = "{wiring.url}"
login_url = "{wiring.url}"
"""


def _banner(url: str, config: EntraSimConfig) -> str:
    return f"""  Entra ID sandbox   {url}   tenant {config.tenant_id}
                     token: POST {url}/{config.tenant_id}/oauth2/v2.0/token (client
                     {config.client_id} / {config.client_secret}); Graph {url}/v1.0
                     control API {url}{CONTROL_PREFIX}users, {CONTROL_PREFIX}audits"""


SIMULATOR = Simulator(
    name="entra",
    create_app=create_app,
    app_config=_app_config,
    config_text=_config_text,
    secrets={f"DESKGATE_IDPS__{IDP_NAME.upper()}__CLIENT_SECRET": EntraSimConfig.client_secret},
    dev_port=8107,
    banner=_banner,
)
