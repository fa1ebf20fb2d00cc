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

import base64
import hashlib
import hmac
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask, Response, g, jsonify, request

from sandbox.common import CONTROL_PREFIX, Controls
from sandbox.entra_directory import (
    AUDIT_PROPERTY,
    DEFAULT_USER_PROPERTIES,
    METHOD_TYPES,
    PASSWORD_METHOD_ID,
    PHONE_IDS,
    ROLES,
    USER_PROPERTIES,
    Actor,
    Directory,
    Method,
    User,
    iso,
    new_id,
)
from sandbox.options import Wiring
from sandbox.simulator import Simulator

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
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
# Throttle budgets (requests, seconds) per app and tenant: Graph's identity-and-access limits
# for a small tenant (3,500 resource units per 10 s; 3,000 writes per 150 s) and the reports
# API's 5 requests per 10 s.
BUDGETS: dict[str, tuple[int, float] | None] = {
    "requests": (3500, 10.0),
    "writes": (3000, 150.0),
    "reports": (5, 10.0),
}


@dataclass
class App:
    """An app registration and its service principal in the tenant."""

    client_id: str
    name: str
    secret: str | None
    permissions: frozenset[str]
    certificates: dict[str, str] = field(default_factory=dict)  # SHA-1 thumbprint hex -> PEM
    service_principal_id: str = field(default_factory=new_id)

    def actor(self) -> Actor:
        return Actor(self.client_id, self.name, self.service_principal_id)


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
    budgets: dict[str, tuple[int, float] | None] = field(default_factory=lambda: dict(BUDGETS))
    employees: frozenset[str] = frozenset()  # UPNs (= mail) seeded with a phone and the app
    user_age_days: float = 30.0


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def graph_error(status: int, code: str, message: str) -> Response:
    request_id = g.get("request_id") or new_id()
    resp = jsonify(
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": iso(time.time()).split(".")[0],
                    "request-id": request_id,
                    "client-request-id": g.get("client_request_id") or request_id,
                },
            }
        }
    )
    resp.status_code = status
    return resp


def aadsts(status: int, error: str, code: int, description: str) -> Response:
    trace, correlation = new_id(), new_id()
    resp = jsonify(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace} "
            f"Correlation ID: {correlation} Timestamp: {iso(time.time())}",
            "error_codes": [code],
            "timestamp": iso(time.time()).replace("T", " ").rstrip("Z") + "Z",
            "trace_id": trace,
            "correlation_id": correlation,
        }
    )
    resp.status_code = status
    return resp


class Throttle:
    """Sliding windows per (bucket, app)."""

    def __init__(self, budgets: dict[str, tuple[int, float] | None]) -> None:
        self.budgets = dict(budgets)
        self.seen: dict[tuple[str, str], deque[float]] = {}
        self.lock = threading.Lock()

    def take(self, buckets: list[str], app: str) -> tuple[str, int] | float:
        """The bucket over budget and the seconds to wait, or the highest share used (0..1)."""
        now, used = time.monotonic(), 0.0
        with self.lock:
            for bucket in buckets:
                budget = self.budgets.get(bucket)
                if budget is None:
                    continue
                limit, window = budget
                seen = self.seen.setdefault((bucket, app), deque())
                while seen and seen[0] <= now - window:
                    seen.popleft()
                if len(seen) >= limit:
                    return bucket, max(1, math.ceil(seen[0] + window - now))
            for bucket in buckets:
                budget = self.budgets.get(bucket)
                if budget is not None:
                    seen = self.seen[(bucket, app)]
                    seen.append(now)
                    used = max(used, len(seen) / budget[0])
        return used


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


def _instant(text: str) -> float:
    head, _, fraction = text.rstrip("Z").partition(".")
    at = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return at + (float(f"0.{fraction}") if fraction else 0.0)


Entry = dict[str, Any]


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


def _dig(entry: dict[str, Any], path: list[str]) -> Any:
    value: Any = entry
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def create_app(config: EntraSimConfig | None = None) -> Flask:
    config = config or EntraSimConfig()
    app = Flask("sandbox-entra")
    directory = Directory(config.audit_delay_seconds)
    apps = {
        config.client_id: App(
            config.client_id,
            config.app_name,
            config.client_secret,
            config.permissions,
            dict(config.certificates),
        )
    }
    signing_key = new_id().encode()  # signs the access tokens this tenant issues
    throttle = Throttle(config.budgets)
    app.extensions["entra_directory"] = directory
    Controls("entra", lambda status, text: graph_error(status, "TooManyRequests", text)).install(
        app
    )

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

    # -- the token endpoint -----------------------------------------------------------------

    @app.post("/<tenant>/oauth2/v2.0/token")
    def token(tenant: str) -> Response:
        form = request.form
        if tenant != config.tenant_id:
            return aadsts(400, "invalid_request", 90002, f"Tenant '{tenant[:40]}' not found.")
        if form.get("grant_type") != "client_credentials":
            return aadsts(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        registered = apps.get(form.get("client_id", ""))
        if registered is None:
            return aadsts(
                400,
                "unauthorized_client",
                700016,
                "Application with identifier was not found in the directory.",
            )
        if form.get("scope") != GRAPH_SCOPE:
            return aadsts(
                400,
                "invalid_scope",
                70011,
                "The provided value for the input parameter 'scope' is not valid.",
            )
        secret, assertion = form.get("client_secret"), form.get("client_assertion")
        if secret is not None and assertion is not None:
            # Sending both is not documented; strict: refused.
            return aadsts(
                400, "invalid_request", 90015, "Only one client credential may be presented."
            )
        if assertion is not None:
            refused = _check_assertion(registered, tenant, assertion, form)
            if refused is not None:
                return refused
        elif secret is None:
            return aadsts(
                400,
                "invalid_client",
                7000218,
                "The request body must contain the "
                "following parameter: 'client_assertion' or 'client_secret'.",
            )
        elif not registered.secret or not hmac.compare_digest(
            secret.encode(), registered.secret.encode()
        ):
            return aadsts(401, "invalid_client", 7000215, "Invalid client secret provided.")
        now = int(time.time())
        claims = {
            "aud": "https://graph.microsoft.com",
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + config.token_ttl_seconds,
            "appid": registered.client_id,
            "oid": registered.service_principal_id,
            "tid": tenant,
            "idtyp": "app",
            "roles": sorted(registered.permissions),
        }
        head = _b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        body = _b64url(json.dumps(claims).encode())
        mac = hmac.new(signing_key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        resp = jsonify(
            {
                "token_type": "Bearer",
                "expires_in": config.token_ttl_seconds,
                "ext_expires_in": config.token_ttl_seconds,
                "access_token": f"{head}.{body}.{_b64url(mac)}",
            }
        )
        resp.headers["Cache-Control"] = "no-store, no-cache"
        return resp

    def _check_assertion(
        registered: App, tenant: str, assertion: str, form: Any
    ) -> Response | None:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return aadsts(400, "invalid_request", 700010, "Invalid client assertion type.")
        try:
            head_b64, body_b64, sig_b64 = assertion.split(".")
            header = json.loads(_unb64url(head_b64))
            claims = json.loads(_unb64url(body_b64))
            thumbprint = _unb64url(header["x5t"]).hex()
            pem = registered.certificates[thumbprint]
        except (ValueError, KeyError, TypeError):
            return aadsts(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature "
                "validation: no registered certificate matches its x5t.",
            )
        key = serialization.load_pem_public_key(pem.encode())
        try:
            if header.get("alg") != "RS256" or not isinstance(key, rsa.RSAPublicKey):
                raise InvalidSignature
            key.verify(
                _unb64url(sig_b64),
                f"{head_b64}.{body_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return aadsts(
                401, "invalid_client", 700027, "Client assertion contains an invalid signature."
            )
        audience = f"{request.host_url}{tenant}/oauth2/v2.0/token"
        if claims.get("iss") != registered.client_id or claims.get("sub") != registered.client_id:
            return aadsts(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        if claims.get("aud") != audience:
            return aadsts(
                401,
                "invalid_client",
                700027,
                "Client assertion audience claim does not match the token endpoint.",
            )
        now = time.time()
        if not (float(claims.get("nbf", now)) - 300 <= now < float(claims.get("exp", 0))):
            return aadsts(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            )
        return None

    # -- Graph: authentication, permissions, throttling -------------------------------------

    def _caller() -> App:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:]:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            head, body, sig = auth[7:].split(".")
            mac = hmac.new(signing_key, f"{head}.{body}".encode(), hashlib.sha256).digest()
            claims = json.loads(_unb64url(body))
            valid = hmac.compare_digest(_unb64url(sig), mac)
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid signature.",
            )
        if claims["exp"] <= time.time():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        caller = apps.get(claims["appid"])
        if caller is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Unknown application.")
        g.roles = frozenset(claims.get("roles") or ())
        return caller

    def graph(
        permissions: tuple[str, ...], *, reports: bool = False
    ) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        def wrap(view: Callable[..., Response]) -> Callable[..., Response]:
            @wraps(view)
            def run(**kwargs: Any) -> Response:
                g.request_id = new_id()
                g.client_request_id = request.headers.get("client-request-id") or g.request_id
                caller = _caller()
                write = request.method in ("POST", "PATCH", "PUT", "DELETE")
                buckets = ["requests", *(["writes"] if write else []), *(["reports"] * reports)]
                taken = throttle.take(buckets, caller.client_id)
                if isinstance(taken, tuple):
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
                if not g.roles & set(permissions):
                    raise GraphError(
                        403,
                        "Authorization_RequestDenied",
                        "Insufficient privileges to complete the operation.",
                    )
                g.caller = caller
                resp = view(**kwargs)
                resp.headers["x-ms-resource-unit"] = "1"
                if taken >= 0.8:
                    resp.headers["x-ms-throttle-limit-percentage"] = f"{taken:.1f}"
                return resp

            return run

        return wrap

    def _user(key: str) -> User:
        user = directory.find(key)
        if user is None:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{key[:60]}' does not "
                "exist or one of its queried reference-property objects are not "
                "present.",
            )
        return user

    def _select(resource: dict[str, Any]) -> dict[str, Any]:
        wanted = request.args.get("$select")
        names = [n.strip() for n in wanted.split(",")] if wanted else list(DEFAULT_USER_PROPERTIES)
        for name in names:
            if name not in USER_PROPERTIES:
                raise GraphError(
                    400,
                    "BadRequest",
                    "Parsing OData Select and Expand failed: "
                    f"Could not find a property named '{name[:40]}' on type "
                    "'microsoft.graph.user'.",
                )
        return {n: resource[n] for n in names}

    def _page(items: list[dict[str, Any]], context: str, limit: int = 999) -> Response:
        try:
            top = int(request.args.get("$top") or config.page_size)
            start = int(_unb64url(request.args.get("$skiptoken", "")) or 0)
        except ValueError:
            raise GraphError(400, "BadRequest", "Invalid $top or $skiptoken.") from None
        if not 1 <= top <= limit:
            raise GraphError(400, "BadRequest", f"Invalid page size specified: '{top}'.")
        body: dict[str, Any] = {
            "@odata.context": f"{request.host_url}v1.0/$metadata#{context}",
            "value": items[start : start + top],
        }
        if start + top < len(items):
            args = {k: v for k, v in request.args.items() if k != "$skiptoken"}
            args["$skiptoken"] = _b64url(str(start + top).encode())
            body["@odata.nextLink"] = f"{request.base_url}?{urlencode(args)}"
        return jsonify(body)

    def _writable(user: User) -> None:
        if user.management_restricted:  # tenant-wide app permissions do not reach into it
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )

    # -- Graph: users, roles, groups ---------------------------------------------------------

    @app.get("/v1.0/users/<key>")
    @graph(READ_USERS)
    def get_user(key: str) -> Response:
        body = _select(_user(key).resource())
        return jsonify(
            {"@odata.context": f"{request.host_url}v1.0/$metadata#users/$entity", **body}
        )

    @app.get("/v1.0/users")
    @graph(READ_USERS)
    def list_users() -> Response:
        found = list(directory.users.values())
        text = request.args.get("$filter")
        if text is not None:
            m = USER_FILTER.match(text.strip())
            if m is None:
                raise GraphError(
                    400,
                    "Request_UnsupportedQuery",
                    "Unsupported or invalid query filter clause specified.",
                )
            prop, value = {"mail": "mail", "userPrincipalName": "upn", "id": "id"}[m[1]], m[2]
            value = _literal(value).lower()  # directory strings compare case-insensitively
            found = [u for u in found if (getattr(u, prop) or "").lower() == value]
        return _page([_select(u.resource()) for u in found], "users")

    @app.get("/v1.0/users/<key>/memberOf")
    @graph(READ_USERS)
    def member_of(key: str) -> Response:
        user = _user(key)
        groups: list[dict[str, Any]] = [
            {
                "@odata.type": "#microsoft.graph.group",
                "id": _name_id(name),
                "displayName": name,
                "securityEnabled": True,
                "mailEnabled": False,
            }
            for name in user.groups
        ]
        roles = [
            {
                "@odata.type": "#microsoft.graph.directoryRole",
                "id": _name_id(f"role:{r}"),
                "displayName": r,
                "roleTemplateId": ROLES[r],
            }
            for r in user.roles
        ]
        return _page(groups + roles, "directoryObjects")

    @app.get("/v1.0/roleManagement/directory/roleAssignments")
    @graph(READ_ROLES)
    def role_assignments() -> Response:
        text = request.args.get("$filter", "")
        m = re.fullmatch(rf"principalId eq {STRING}", text.strip())
        if m is None:  # the directory provider answers only filtered lists
            raise GraphError(
                400, "BadRequest", "A filter on principalId or roleDefinitionId is required."
            )
        user = directory.find(_literal(m[1]))
        expand = request.args.get("$expand")
        if expand not in (None, "roleDefinition"):
            raise GraphError(400, "BadRequest", f"Unsupported $expand: {expand[:40]}")
        rows = []
        for role in user.roles if user else ():
            row: dict[str, Any] = {
                "id": _name_id(f"{user.id if user else ''}:{role}"),
                "principalId": user.id if user else "",
                "roleDefinitionId": ROLES[role],
                "directoryScopeId": "/",
            }
            if expand:
                row["roleDefinition"] = {
                    "id": ROLES[role],
                    "displayName": role,
                    "templateId": ROLES[role],
                    "isBuiltIn": True,
                }
            rows.append(row)
        return _page(rows, "roleManagement/directory/roleAssignments")

    # -- Graph: authentication methods and sessions ------------------------------------------

    @app.get("/v1.0/users/<key>/authentication/methods")
    @graph(READ_METHODS)
    def list_methods(key: str) -> Response:
        user = _user(key)
        body = [m.resource() for m in user.methods]
        return jsonify(
            {
                "@odata.context": f"{request.host_url}v1.0/$metadata#users('{user.id}')"
                "/authentication/methods",
                "value": body,
            }
        )

    @app.delete("/v1.0/users/<key>/authentication/<segment>/<method_id>")
    @graph(WRITE_METHODS)
    def delete_method(key: str, segment: str, method_id: str) -> Response:
        user = _user(key)
        kind = segment.removesuffix("Methods")
        if not segment.endswith("Methods") or kind not in METHOD_TYPES:
            raise GraphError(
                400, "badRequest", f"Resource not found for the segment '{segment[:40]}'."
            )
        if kind == "password":
            raise GraphError(400, "badRequest", "The password method cannot be deleted.")
        _writable(user)
        _remove_method(user, kind, method_id, g.caller.actor())
        return Response(status=204)

    def _remove_method(user: User, kind: str, method_id: str, actor: Actor) -> None:
        with directory.lock:
            method = user.method(method_id)
            if method is None or method.type != kind:
                raise GraphError(404, "itemNotFound", "The requested method was not found.")
            others = [m for m in user.methods if m.type != "password" and m.id != method_id]
            if method_id == user.default_method and others:
                raise GraphError(
                    400,
                    "badRequest",
                    "Cannot delete default method with other "
                    "methods configured. Delete other methods first or change "
                    "the default method.",
                )
            user.methods.remove(method)
            if method_id == user.default_method:
                user.default_method = None
        who = "User" if actor.user is user else "Admin"
        directory.log(
            actor,
            f"{who} deleted security info",
            "Authentication Methods",
            user,
            reason=f"{who} deleted {METHOD_TYPES[kind]} method for user",
        )

    @app.post("/v1.0/users/<key>/revokeSignInSessions")
    @graph(REVOKE)
    def revoke(key: str) -> Response:
        user = _user(key)
        _writable(user)
        old = iso(user.sessions_valid_from or user.created)
        user.sessions_valid_from = time.time()
        directory.log(
            g.caller.actor(),
            "Update StsRefreshTokenValidFrom Timestamp",
            "Core Directory",
            user,
            changed=[("StsRefreshTokensValidFrom", [old], [iso(user.sessions_valid_from)])],
        )
        return jsonify(
            {"@odata.context": f"{request.host_url}v1.0/$metadata#Edm.Boolean", "value": True}
        )

    # -- Graph: the audit log ----------------------------------------------------------------

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

    # -- control API -------------------------------------------------------------------------

    def _seed(body: dict[str, Any]) -> User:
        upn = str(body["upn"])
        created = time.time() - float(body.get("created_days_ago", config.user_age_days)) * 86400
        user = User(
            id=str(body.get("id") or new_id()),
            upn=upn,
            display_name=str(body.get("displayName") or upn.split("@")[0]),
            mail=body.get("mail", upn),
            mobile=body.get("mobilePhone"),
            enabled=bool(body.get("enabled", True)),
            created=created,
            management_restricted=bool(body.get("management_restricted", False)),
            roles=[r for r in body.get("roles", []) if r in ROLES],
            groups=list(body.get("groups", [])),
        )
        user.methods.append(Method("password", PASSWORD_METHOD_ID, created=created))
        for spec in body.get("methods", []):
            method = _new_method(dict(spec), created)
            user.methods.append(method)
            if spec.get("default"):
                user.default_method = method.id
        with directory.lock:
            directory.users[user.id] = user
        return user

    def _new_method(spec: dict[str, Any], created: float | None = None) -> Method:
        kind = str(spec.pop("type"))
        spec.pop("default", None)
        if kind not in METHOD_TYPES or kind == "password":
            raise GraphError(400, "badRequest", f"unknown method type {kind!r}")
        method_id = PHONE_IDS[spec.setdefault("phoneType", "mobile")] if kind == "phone" else None
        return Method(kind, method_id or new_id(), spec, created or time.time())

    def _internal(user: User) -> dict[str, Any]:
        return {
            **user.resource(),
            "methods": [m.resource() for m in user.methods],
            "default_method": user.default_method,
            "roles": user.roles,
            "groups": user.groups,
        }

    def _admin(body: dict[str, Any]) -> Actor:
        upn = body.get("admin")
        if not upn:  # HR provisioning (an app), when no admin is named
            return Actor("f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b", "HR provisioning", new_id())
        admin = directory.find(str(upn))
        if admin is None:
            raise GraphError(404, "Request_ResourceNotFound", "no such admin")
        return Actor(user=admin)

    @app.route(f"{CONTROL_PREFIX}users", methods=["POST"])
    def create_user() -> Response:
        return jsonify(_internal(_seed(request.get_json(force=True))))

    @app.route(f"{CONTROL_PREFIX}users/<key>", methods=["GET", "PATCH"])
    def control_user(key: str) -> Response:
        user = _user(key)
        if request.method == "PATCH":
            body = request.get_json(force=True)
            actor, changed = _admin(body), []
            with directory.lock:
                for prop, attr in (
                    ("mail", "mail"),
                    ("mobilePhone", "mobile"),
                    ("userPrincipalName", "upn"),
                ):
                    if prop in body and body[prop] != getattr(user, attr):
                        old = getattr(user, attr)
                        setattr(user, attr, body[prop])
                        changed.append(
                            (
                                AUDIT_PROPERTY[prop],
                                [old] if old else [],
                                [body[prop]] if body[prop] else [],
                            )
                        )
                if "accountEnabled" in body and bool(body["accountEnabled"]) != user.enabled:
                    user.enabled = bool(body["accountEnabled"])
                    changed.append(("AccountEnabled", [not user.enabled], [user.enabled]))
            if changed:
                directory.log(actor, "Update user", "Core Directory", user, changed=changed)
        return jsonify(_internal(user))

    @app.post(f"{CONTROL_PREFIX}portal")
    def portal() -> Response:
        body = request.get_json(force=True)
        actor, user, action = _admin(body), _user(str(body["user"])), body["action"]
        if action == "delete_method":
            method = user.method(str(body["method"]))
            if method is None:
                raise GraphError(404, "itemNotFound", "The requested method was not found.")
            _remove_method(user, method.type, method.id, actor)
        elif action == "create_tap":  # one TAP per user: a new one replaces the old
            user.methods = [m for m in user.methods if m.type != "temporaryAccessPass"]
            user.methods.append(
                _new_method(
                    {"type": "temporaryAccessPass", "lifetimeInMinutes": 60, "isUsableOnce": True}
                )
            )
            directory.log(
                actor,
                "Admin registered security info",
                "Authentication Methods",
                user,
                reason="Admin registered temporary access pass method for user",
            )
        elif action == "reset_password":
            directory.log(actor, "Reset user password", "Core Directory", user)
        else:
            raise GraphError(400, "badRequest", f"unknown portal action {action!r}")
        return jsonify(_internal(user))

    @app.post(f"{CONTROL_PREFIX}self_service")
    def self_service() -> Response:
        body = request.get_json(force=True)
        user, action = _user(str(body["user"])), body["action"]
        actor = Actor(user=user)
        if action == "reset_password":
            directory.log(
                actor, "Reset password (self-service)", "Self-service Password Management", user
            )
        elif action == "register_method":
            method = _new_method(dict(body["method"]))
            user.methods.append(method)
            directory.log(
                actor,
                "User registered security info",
                "Authentication Methods",
                user,
                reason=f"User registered {METHOD_TYPES[method.type]} method",
            )
        else:
            raise GraphError(400, "badRequest", f"unknown self-service action {action!r}")
        return jsonify(_internal(user))

    @app.get(f"{CONTROL_PREFIX}audits")
    def all_audits() -> Response:
        with directory.lock:
            rows = [{"visible_at": at, **entry} for at, entry in directory.audits]
        return jsonify({"audits": rows})

    @app.put(f"{CONTROL_PREFIX}apps/<client_id>")
    def set_app(client_id: str) -> Response:
        body = request.get_json(force=True)
        registered = apps.setdefault(
            client_id,
            App(client_id, str(body.get("name", client_id)), body.get("secret"), frozenset()),
        )
        if "permissions" in body:
            registered.permissions = frozenset(body["permissions"])
        if "certificates" in body:
            registered.certificates = dict(body["certificates"])
        return jsonify({"client_id": client_id, "permissions": sorted(registered.permissions)})

    @app.put(f"{CONTROL_PREFIX}throttle")
    def set_throttle() -> Response:
        body = request.get_json(force=True)
        budget = body.get("requests")
        with throttle.lock:
            throttle.budgets[str(body["bucket"])] = (
                None if budget is None else (int(budget), float(body["per_seconds"]))
            )
            throttle.seen.clear()
        return jsonify({"budgets": throttle.budgets})

    @app.put(f"{CONTROL_PREFIX}audit_delay")
    def set_audit_delay() -> Response:
        directory.audit_delay = float(request.get_json(force=True)["seconds"])
        return jsonify({"seconds": directory.audit_delay})

    @app.post(f"{CONTROL_PREFIX}reset")
    def reset() -> Response:
        with directory.lock:
            directory.users.clear()
            directory.audits.clear()
        return jsonify({"ok": True})

    for upn in sorted(config.employees):
        _seed(
            {
                "upn": upn,
                "mobilePhone": "+1 2065550100",
                "methods": [
                    {"type": "microsoftAuthenticator", "displayName": "Phone", "default": True},
                    {"type": "phone", "phoneNumber": "+1 2065550100"},
                ],
            }
        )
    return app


def _name_id(name: str) -> str:
    """A stable GUID-shaped id for a named object (a group, a role assignment)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"


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
    dev_port=8106,
    banner=_banner,
)
