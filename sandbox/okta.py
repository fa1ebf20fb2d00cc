"""An Okta org (Management API and System Log), as a real HTTP server, written from Okta's API
reference and OpenAPI specification (users, lifecycle, factors, roles, sessions, System Log),
its "core Okta API" conventions page (errors, 411, request ids, paging, rate-limit headers) and
its service-app OAuth guide (``sandbox/okta_auth.py``).

What it models, and where from:

- Users (``GET /api/v1/users/{idOrLogin}``; ``GET /api/v1/users?search=…`` with ``limit`` and
  ``Link: <…after=…>; rel="next"`` paging; search includes DEPROVISIONED users, as documented),
  with Okta's statuses and the ``_links`` of the lifecycle operations allowed in the current
  status (``unlock`` only when LOCKED_OUT). Groups, roles (``okta.roles.read``) and factors.
- Actions: ``POST …/lifecycle/unlock`` (LOCKED_OUT only; never for a user whose password lives
  in Active Directory: ``E0000032``), ``…/lifecycle/reset_factors``,
  ``…/lifecycle/reset_password?sendEmail=…[&revokeSessions=…]`` (``sendEmail`` is required in
  the current spec: with ``true`` Okta e-mails the link, recorded in ``/_sandbox/emails``; with
  ``false`` the answer carries a one-time ``resetPasswordUrl``, recorded as handed out),
  ``DELETE …/sessions[?oauthTokens=true]`` (204). Each answers 200 with an empty object.
- Conventions: a POST with no body and no ``Content-Length`` is 411; errors carry ``errorCode``,
  ``errorSummary``, ``errorLink``, ``errorId``, ``errorCauses``; every answer carries
  ``X-Okta-Request-Id``; every ``/api/v1`` answer carries ``X-Rate-Limit-Limit``,
  ``-Remaining`` and ``-Reset`` (epoch seconds) and a 429 ``E0000047`` once a bucket is spent
  (per minute: Okta's published figures, smaller ones set through ``rate_limits``).
- The System Log (``sandbox/okta_log.py``): every action is recorded with the actor Okta would
  name (Deskgate's app, the API token's admin, an admin in the console, the user themselves),
  and becomes visible ``log_delay_seconds`` later.

Strict where the documentation is silent: the status a lifecycle call refuses answers
``E0000038`` (403), resetting the factors of a user with none is refused (``E0000001``).

Control API (beside ``sandbox.common``'s): ``POST /_sandbox/users`` creates a user (``login``,
``email``, ``mobilePhone``, ``status``, ``roles``, ``groups``, ``factors``, ``provider``,
``created`` epoch seconds; logged as ``user.lifecycle.create`` then); ``PATCH
/_sandbox/users/{id}`` changes the profile (logged as ``user.account.update_profile`` with
``changedAttributes``; ``at`` backdates it); ``POST /_sandbox/users/{id}/lock``; ``POST
/_sandbox/console`` plays an admin in the admin console (``{"user", "action"}``: unlock,
reset_password, reset_factors, clear_sessions); ``POST /_sandbox/users/{id}/self_service``
plays the user (``{"action": "reset_password" | "unlock"}``); ``GET /_sandbox/log`` (every
event, persisted or not), ``GET /_sandbox/emails``, ``PUT /_sandbox/settings``
(``log_delay_seconds``, ``rate_limits``), ``POST /_sandbox/reset``.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, Response, g, jsonify, request

from sandbox.common import CONTROL_PREFIX, Controls
from sandbox.okta_auth import Caller, Issued, caller, insufficient_scope, issue_token
from sandbox.okta_log import LogQueryError, SystemLog, iso
from sandbox.options import Wiring
from sandbox.simulator import Simulator

SCOPES = frozenset({"okta.users.read", "okta.users.manage", "okta.roles.read", "okta.logs.read"})
# The sandbox app's key pair, derived from a fixed seed so every process (the stack, a benchmark's
# simulator process) agrees on it without a private key in the repository. Sandbox only.
_KEY = ec.derive_private_key(
    int.from_bytes(hashlib.sha256(b"deskgate sandbox okta app").digest(), "big"), ec.SECP256R1()
)
PRIVATE_KEY_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
KEY_ID = "sandbox-key-1"
# Okta's per-minute rate limits (Workforce Identity): GET one user, other user reads, writes to
# a user (the lifecycle bucket is undocumented: Okta's "POST/PUT/DELETE /api/v1/users/{id}"
# figure), the System Log.
DEFAULT_RATE_LIMITS = {"user": 2000, "users": 1200, "user_write": 600, "logs": 120}
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"


def public_jwk() -> dict[str, Any]:
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(_KEY.public_key(), as_dict=True)
    return {**jwk, "kid": KEY_ID, "use": "sig", "alg": "ES256"}


@dataclass
class OktaSimConfig:
    api_token: str = "sandbox-okta-api-token-0123456789"  # the sandbox's own
    client_id: str = "0oasandboxdeskgate01"
    app_name: str = "Deskgate"
    jwk: dict[str, Any] = field(default_factory=public_jwk)  # the app's registered public key
    granted_scopes: frozenset[str] = SCOPES
    require_dpop: bool = False  # the app's "Require DPoP header in token requests"
    log_delay_seconds: float = 0.0
    rate_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    # The admin who created the API token (the actor of SSWS calls), and the console admin.
    token_admin: str = "it.admin@acme.test"
    console_admin: str = "helpdesk.lead@acme.test"


ERRORS = {
    "E0000001": (400, "Api validation failed: {0}"),
    "E0000006": (403, "You do not have permission to perform the requested action"),
    "E0000007": (404, "Not found: Resource not found: {0} (User)"),
    "E0000011": (401, "Invalid token provided"),
    "E0000032": (403, "Unlock is not allowed for this user."),
    "E0000038": (403, "This operation is not allowed in the user's current status."),
    "E0000047": (429, "API call exceeded rate limit due to too many requests."),
}


def okta_error(code: str, detail: str = "", causes: tuple[str, ...] = ()) -> Response:
    status, summary = ERRORS[code]
    resp = jsonify(
        {
            "errorCode": code,
            "errorSummary": summary.replace("{0}", detail),
            "errorLink": code,
            "errorId": "oae" + secrets.token_urlsafe(16),
            "errorCauses": [{"errorSummary": c} for c in causes],
        }
    )
    resp.status_code = status
    return resp


def _id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(17))


@dataclass
class Buckets:
    """Okta's rate limits: a fixed one-minute window per bucket, resetting on the minute."""

    limits: dict[str, int]
    used: dict[tuple[str, int], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, bucket: str) -> tuple[int, int, int]:
        """(limit, remaining after this call or -1 when spent, reset epoch seconds)."""
        now = time.time()
        minute = math.floor(now / 60)
        limit = self.limits.get(bucket, DEFAULT_RATE_LIMITS.get(bucket, 1200))
        with self.lock:
            used = self.used.get((bucket, minute), 0)
            if used >= limit:
                return limit, -1, (minute + 1) * 60
            self.used[(bucket, minute)] = used + 1
        return limit, limit - used - 1, (minute + 1) * 60


def _bucket(method: str, path: str) -> str:
    if path.startswith("/api/v1/logs"):
        return "logs"
    if method != "GET":
        return "user_write"
    return "user" if path.count("/") == 4 else "users"  # /api/v1/users/{id}


@dataclass
class Org:
    config: OktaSimConfig
    log: SystemLog
    buckets: Buckets
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    emails: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _user_json(org_url: str, user: dict[str, Any]) -> dict[str, Any]:
    """A user as Okta answers it: the public fields, and ``_links`` for what its status allows."""
    base = f"{org_url}/api/v1/users/{user['id']}"
    status = user["status"]
    ops: list[str] = []
    if status in ("ACTIVE", "PASSWORD_EXPIRED", "RECOVERY", "LOCKED_OUT"):
        ops += ["resetPassword", "resetFactors", "expirePassword", "suspend", "deactivate"]
    if status == "LOCKED_OUT":
        ops.append("unlock")
    if status == "SUSPENDED":
        ops += ["unsuspend", "deactivate"]
    if status == "DEPROVISIONED":
        ops += ["activate", "delete"]
    path = {"resetFactors": "reset_factors", "resetPassword": "reset_password"}
    links = {
        op: {"href": f"{base}/lifecycle/{path.get(op, op.lower())}", "method": "POST"} for op in ops
    }
    links["self"] = {"href": base}
    return {
        **{k: v for k, v in user.items() if not k.startswith("_")},
        "_links": links,
    }


def create_app(config: OktaSimConfig | None = None) -> Flask:
    config = config or OktaSimConfig()
    app = Flask("sandbox-okta")
    org = Org(config, SystemLog(config.log_delay_seconds), Buckets(dict(config.rate_limits)))
    issued = Issued()
    app.extensions["okta_org"] = org
    controls = Controls("okta", lambda status, text: _fault(status, text))
    controls.install(app)

    def org_url() -> str:
        return request.host_url.rstrip("/")

    @app.before_request
    def _request_id() -> Response | None:
        g.okta_request_id = secrets.token_urlsafe(20)[:27]
        if request.path.startswith(CONTROL_PREFIX) or not request.path.startswith("/api/"):
            return None
        # Okta: "POST/PUT requests without a body must send Content-Length: 0", else 411.
        headers = request.headers
        if (
            request.method in ("POST", "PUT")
            and "Content-Length" not in headers
            and "chunked" not in headers.get("Transfer-Encoding", "")
        ):
            return Response("Length Required", status=411, mimetype="text/plain")
        limit, remaining, reset = org.buckets.take(_bucket(request.method, request.path))
        g.okta_rate = (limit, max(remaining, 0), reset)
        if remaining < 0:
            return okta_error("E0000047")
        who = caller(issued, config.api_token, SCOPES)
        if who is None:
            return okta_error("E0000011")
        g.okta_caller = who
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["X-Okta-Request-Id"] = g.get("okta_request_id", "")
        rate = g.get("okta_rate")
        if rate is not None:
            resp.headers["X-Rate-Limit-Limit"] = str(rate[0])
            resp.headers["X-Rate-Limit-Remaining"] = str(rate[1])
            resp.headers["X-Rate-Limit-Reset"] = str(rate[2])
        return resp

    def need(scope: str) -> Response | None:
        who: Caller = g.okta_caller
        return None if scope in who.scopes else insufficient_scope(org_url(), scope)

    def actor() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(actor, client, transaction) of the current API call, as the System Log names them."""
        who: Caller = g.okta_caller
        agent = {"rawUserAgent": request.headers.get("User-Agent", ""), "os": None}
        tx: dict[str, Any] = {"type": "WEB", "id": g.okta_request_id, "detail": {}}
        ip = request.remote_addr
        if who.kind == "app":
            app_actor = {
                "id": who.client_id,
                "type": "PublicClientApp",
                "alternateId": who.client_id,
                "displayName": config.app_name,
                "detailEntry": None,
            }
            client = {"id": who.client_id, "userAgent": agent, "ipAddress": ip}
            return app_actor, client, tx
        admin = _admin(config.token_admin)
        tx["detail"] = {"requestApiTokenId": "00Tsandboxtoken000001"}
        return admin, {"id": None, "userAgent": agent, "ipAddress": ip}, tx

    def find(id_or_login: str) -> dict[str, Any] | None:
        with org.lock:
            if id_or_login in org.users:
                return org.users[id_or_login]
            wanted = id_or_login.lower()
            return next(
                (u for u in org.users.values() if u["profile"]["login"].lower() == wanted), None
            )

    def target(user: dict[str, Any]) -> dict[str, Any]:
        name = f"{user['profile'].get('firstName', '')} {user['profile'].get('lastName', '')}"
        return {
            "id": user["id"],
            "type": "User",
            "alternateId": user["profile"]["login"],
            "displayName": name.strip(),
            "detailEntry": None,
        }

    def record(event_type: str, user: dict[str, Any], message: str, **debug: Any) -> None:
        who, client, tx = actor()
        org.log.record(
            event_type,
            who,
            client,
            target(user),
            message=message,
            request_id=g.okta_request_id,
            transaction=tx,
            debug=debug,
        )

    @app.post("/oauth2/v1/token")
    def token() -> Response:
        return issue_token(
            issued,
            org=org_url(),
            client_id=config.client_id,
            public_jwk=config.jwk,
            granted=config.granted_scopes,
            require_dpop=config.require_dpop,
        )

    # -- reads --------------------------------------------------------------------------

    @app.get("/api/v1/users/<path:id_or_login>")
    def get_user(id_or_login: str) -> Response:
        if (refused := need("okta.users.read")) is not None:
            return refused
        user = find(id_or_login)
        if user is None:
            return okta_error("E0000007", id_or_login)
        return jsonify(_user_json(org_url(), user))

    @app.get("/api/v1/users")
    def search_users() -> Response:
        if (refused := need("okta.users.read")) is not None:
            return refused
        try:
            conditions = _search(request.args.get("search", ""))
            limit = int(request.args.get("limit", "200"))
        except ValueError as exc:
            return okta_error("E0000001", str(exc))
        if not 1 <= limit <= 200:
            return okta_error("E0000001", "limit must be 1 to 200")
        after = request.args.get("after", "")
        with org.lock:
            found = sorted(
                (u for u in org.users.values() if _matches(u, conditions)), key=lambda u: u["id"]
            )
        found = [u for u in found if u["id"] > after]
        page = found[:limit]
        resp = jsonify([_user_json(org_url(), u) for u in page])
        self_url = f"{org_url()}{request.full_path.rstrip('?')}"
        links = [f'<{self_url}>; rel="self"']
        if len(found) > limit:
            query = {k: v for k, v in request.args.items() if k != "after"}
            query["after"] = page[-1]["id"]
            links.append(
                f'<{org_url()}/api/v1/users?{urlencode(query, quote_via=quote)}>; rel="next"'
            )
        resp.headers["Link"] = ", ".join(links)
        return resp

    @app.get("/api/v1/users/<user_id>/roles")
    def roles(user_id: str) -> Response:
        return _listing(user_id, "okta.roles.read", "_roles")

    @app.get("/api/v1/users/<user_id>/groups")
    def groups(user_id: str) -> Response:
        return _listing(user_id, "okta.users.read", "_groups")

    @app.get("/api/v1/users/<user_id>/factors")
    def factors(user_id: str) -> Response:
        return _listing(user_id, "okta.users.read", "_factors")

    def _listing(user_id: str, scope: str, key: str) -> Response:
        if (refused := need(scope)) is not None:
            return refused
        user = find(user_id)
        if user is None:
            return okta_error("E0000007", user_id)
        return jsonify(user[key])

    @app.get("/api/v1/logs")
    def logs() -> Response:
        if (refused := need("okta.logs.read")) is not None:
            return refused
        try:
            events, after = org.log.query(dict(request.args.items()))
        except LogQueryError as exc:
            return okta_error("E0000001", str(exc)) if exc.code == "E0000001" else _since(exc)
        except ValueError:
            return okta_error("E0000001", "since/until must be ISO 8601")
        resp = jsonify(events)
        if after is not None:
            query = {k: v for k, v in request.args.items() if k not in ("after", "since")}
            query["after"] = after
            resp.headers["Link"] = (
                f'<{org_url()}/api/v1/logs?{urlencode(query, quote_via=quote)}>; rel="next"'
            )
        return resp

    # -- actions ------------------------------------------------------------------------

    def acting(user_id: str) -> dict[str, Any] | Response:
        if (refused := need("okta.users.manage")) is not None:
            return refused
        user = find(user_id)
        return okta_error("E0000007", user_id) if user is None else user

    @app.post("/api/v1/users/<user_id>/lifecycle/unlock")
    def unlock(user_id: str) -> Response:
        user = acting(user_id)
        if isinstance(user, Response):
            return user
        if user["credentials"]["provider"]["type"] != "OKTA":
            return okta_error("E0000032")  # the lockout lives in the directory
        if user["status"] != "LOCKED_OUT":
            return okta_error("E0000038")
        _set_status(user, "ACTIVE")
        record("user.account.unlock_by_admin", user, "Unlock user account by admin")
        return jsonify({})

    @app.post("/api/v1/users/<user_id>/lifecycle/reset_factors")
    def reset_factors(user_id: str) -> Response:
        user = acting(user_id)
        if isinstance(user, Response):
            return user
        if user["status"] in ("DEPROVISIONED", "SUSPENDED", "STAGED", "PROVISIONED"):
            return okta_error("E0000038")
        if not user["_factors"]:
            return okta_error("E0000001", "reset factors", ("The user has no enrolled factors",))
        with org.lock:
            user["_factors"] = []
        record("user.mfa.factor.reset_all", user, "Reset all factors for user")
        return jsonify({})

    @app.post("/api/v1/users/<user_id>/lifecycle/reset_password")
    def reset_password(user_id: str) -> Response:
        user = acting(user_id)
        if isinstance(user, Response):
            return user
        send_email = request.args.get("sendEmail")
        if send_email not in ("true", "false"):
            return okta_error("E0000001", "sendEmail", ("sendEmail: is required",))
        if user["status"] in ("DEPROVISIONED", "SUSPENDED", "STAGED", "PROVISIONED"):
            return okta_error("E0000038")
        revoke = request.args.get("revokeSessions") == "true"
        _set_status(user, "RECOVERY")
        record(
            "user.account.reset_password",
            user,
            "Fired when the user's Okta password is reset",
            is_self_initiated="false",
            session_revocation=str(revoke).lower(),
        )
        if revoke:
            record("user.session.clear", user, "Clear user sessions")
        with org.lock:
            org.emails.append(
                {"to": user["profile"]["email"], "user": user["id"], "kind": "reset_password"}
                if send_email == "true"
                else {"to": None, "user": user["id"], "kind": "reset_password_url_returned"}
            )
        if send_email == "true":
            return jsonify({})
        return jsonify(
            {"resetPasswordUrl": f"{org_url()}/reset_password/{secrets.token_urlsafe()}"}
        )

    @app.delete("/api/v1/users/<user_id>/sessions")
    def clear_sessions(user_id: str) -> Response:
        user = acting(user_id)
        if isinstance(user, Response):
            return user
        tokens = request.args.get("oauthTokens") == "true"
        record("user.session.clear", user, "Clear user sessions", revokeOauthTokens=str(tokens))
        return Response(status=204, content_type=None)

    _controls(app, org, find, target)
    return app


def _admin(login: str) -> dict[str, Any]:
    return {
        "id": "00u" + hashlib.sha256(login.encode()).hexdigest()[:17],
        "type": "User",
        "alternateId": login,
        "displayName": login.split("@")[0],
        "detailEntry": None,
    }


def _set_status(user: dict[str, Any], status: str) -> None:
    user["status"] = status
    user["statusChanged"] = user["lastUpdated"] = iso(time.time())


def _search(text: str) -> list[tuple[str, str]]:
    """``search`` as far as Deskgate uses it: ``<field> eq "value"`` joined by ``and``."""
    found = []
    for part in re.split(r"\s+and\s+", text.strip()) if text.strip() else []:
        match = re.fullmatch(r'\s*(profile\.\w+|id|status)\s+eq\s+"([^"]*)"\s*', part)
        if match is None:
            raise ValueError(f"search: unsupported expression {part!r}")
        found.append((match.group(1), match.group(2)))
    return found


def _matches(user: dict[str, Any], conditions: list[tuple[str, str]]) -> bool:
    for path, want in conditions:
        value = user["profile"].get(path[8:]) if path.startswith("profile.") else user.get(path)
        # Okta compares strings in a search case-insensitively.
        if not isinstance(value, str) or value.lower() != want.lower():
            return False
    return True


def _since(exc: LogQueryError) -> Response:
    resp = jsonify(
        {
            "errorCode": exc.code,
            "errorSummary": str(exc),
            "errorLink": exc.code,
            "errorId": "oae" + secrets.token_urlsafe(16),
            "errorCauses": [],
        }
    )
    resp.status_code = 400
    return resp


def _fault(status: int, text: str) -> Response:
    """An injected fault (``sandbox.common``) in Okta's error shape."""
    if status == 429:
        return okta_error("E0000047")
    resp = jsonify(
        {
            "errorCode": "E0000009" if status >= 500 else "E0000001",
            "errorSummary": text,
            "errorLink": "E0000009",
            "errorId": "oae" + secrets.token_urlsafe(16),
            "errorCauses": [],
        }
    )
    resp.status_code = status
    return resp


def _controls(
    app: Flask,
    org: Org,
    find: Callable[[str], dict[str, Any] | None],
    target: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    config = org.config

    def people_record(
        event_type: str, user: dict[str, Any], who: dict[str, Any], message: str, **more: Any
    ) -> None:
        agent = {"rawUserAgent": BROWSER, "os": "Mac OS X", "browser": "SAFARI"}
        at = more.pop("at", None)
        org.log.record(
            event_type,
            who,
            {"id": None, "userAgent": agent, "ipAddress": "203.0.113.7"},
            target(user),
            message=message,
            request_id=secrets.token_urlsafe(20)[:27],
            transaction={"type": "WEB", "id": secrets.token_urlsafe(12), "detail": {}},
            debug=more,
            at=at,
        )

    def self_actor(user: dict[str, Any]) -> dict[str, Any]:
        return {**target(user), "type": "User"}

    @app.post(f"{CONTROL_PREFIX}users")
    def create_user() -> Response:
        body = request.get_json(force=True)
        created = float(body.get("created", time.time()))
        login = body["login"]
        profile = {
            "login": login,
            "email": body.get("email", login),
            "firstName": body.get("firstName", login.split("@")[0].split(".")[0].title()),
            "lastName": body.get("lastName", "Employee"),
            "mobilePhone": body.get("mobilePhone"),
            "secondEmail": None,
        }
        provider = body.get("provider", "OKTA")
        user = {
            "id": _id("00u"),
            "status": body.get("status", "ACTIVE"),
            "created": iso(created),
            "activated": iso(created),
            "statusChanged": iso(created),
            "lastLogin": None,
            "lastUpdated": iso(created),
            "passwordChanged": iso(created),
            "type": {"id": "oty" + "sandboxdefault0001"},
            "profile": profile,
            "credentials": {
                "password": {},
                "provider": {
                    "type": provider,
                    "name": "OKTA" if provider == "OKTA" else "acme.test",
                },
            },
            "_roles": [
                {
                    "id": _id("ra1"),
                    "label": role.replace("_", " ").title(),
                    "type": role,
                    "status": "ACTIVE",
                    "created": iso(created),
                    "lastUpdated": iso(created),
                    "assignmentType": "USER",
                }
                for role in body.get("roles", [])
            ],
            "_groups": [
                {
                    "id": _id("00g"),
                    "created": iso(created),
                    "lastUpdated": iso(created),
                    "lastMembershipUpdated": iso(created),
                    "objectClass": ["okta:user_group"],
                    "type": "OKTA_GROUP",
                    "profile": {"name": name, "description": None},
                }
                for name in ["Everyone", *body.get("groups", [])]
            ],
            "_factors": [_factor(kind, created) for kind in body.get("factors", ["push"])],
        }
        with org.lock:
            org.users[user["id"]] = user
        people_record(
            "user.lifecycle.create", user, _admin(config.console_admin), "Create okta user",
            at=created,
        )  # fmt: skip
        return jsonify(_user_json(request.host_url.rstrip("/"), user))

    @app.patch(f"{CONTROL_PREFIX}users/<user_id>")
    def change_profile(user_id: str) -> Response:
        user = find(user_id)
        if user is None:
            return okta_error("E0000007", user_id)
        body = request.get_json(force=True)
        at = float(body.pop("at", time.time()))
        with org.lock:
            user["profile"].update(body)
            user["lastUpdated"] = iso(at)
        people_record(
            "user.account.update_profile", user, _admin(config.console_admin),
            "Update user profile for Okta", changedAttributes=",".join(body), at=at,
        )  # fmt: skip
        return jsonify(_user_json(request.host_url.rstrip("/"), user))

    @app.post(f"{CONTROL_PREFIX}users/<user_id>/lock")
    def lock(user_id: str) -> Response:
        user = find(user_id)
        if user is None:
            return okta_error("E0000007", user_id)
        _set_status(user, "LOCKED_OUT")
        people_record("user.account.lock", user, self_actor(user), "Max sign in attempts exceeded")
        return jsonify({"status": user["status"]})

    @app.post(f"{CONTROL_PREFIX}console")
    def console() -> Response:
        body = request.get_json(force=True)
        user = find(body["user"])
        if user is None:
            return okta_error("E0000007", body["user"])
        admin = _admin(body.get("admin", config.console_admin))
        action = body["action"]
        if action == "unlock":
            _set_status(user, "ACTIVE")
            people_record("user.account.unlock_by_admin", user, admin, "Unlock user account")
        elif action == "reset_password":
            _set_status(user, "RECOVERY")
            people_record(
                "user.account.reset_password", user, admin, "Reset password",
                is_self_initiated="false",
            )  # fmt: skip
        elif action == "reset_factors":
            user["_factors"] = []
            people_record("user.mfa.factor.reset_all", user, admin, "Reset all factors for user")
        elif action == "clear_sessions":
            people_record("user.session.clear", user, admin, "Clear user sessions")
        else:
            return okta_error("E0000001", f"unknown console action {action}")
        return jsonify({"done": action})

    @app.post(f"{CONTROL_PREFIX}users/<user_id>/self_service")
    def self_service(user_id: str) -> Response:
        user = find(user_id)
        if user is None:
            return okta_error("E0000007", user_id)
        action = request.get_json(force=True)["action"]
        if action == "reset_password":
            people_record(
                "user.account.reset_password", user, self_actor(user), "Self-service reset",
                is_self_initiated="true",
            )  # fmt: skip
        elif action == "unlock":
            _set_status(user, "ACTIVE")
            people_record("user.account.unlock", user, self_actor(user), "User account unlocked")
        else:
            return okta_error("E0000001", f"unknown self-service action {action}")
        return jsonify({"done": action})

    @app.get(f"{CONTROL_PREFIX}log")
    def all_events() -> Response:
        return jsonify({"events": org.log.everything()})

    @app.get(f"{CONTROL_PREFIX}emails")
    def emails() -> Response:
        with org.lock:
            return jsonify({"emails": list(org.emails)})

    @app.put(f"{CONTROL_PREFIX}settings")
    def settings() -> Response:
        body = request.get_json(force=True)
        if "log_delay_seconds" in body:
            org.log.delay = float(body["log_delay_seconds"])
        if "rate_limits" in body:
            with org.buckets.lock:
                org.buckets.limits.update({k: int(v) for k, v in body["rate_limits"].items()})
                org.buckets.used.clear()
        return jsonify({"ok": True})

    @app.post(f"{CONTROL_PREFIX}reset")
    def reset() -> Response:
        with org.lock:
            org.users.clear()
            org.emails.clear()
        with org.log.lock:
            org.log.events.clear()
        org.log.delay = config.log_delay_seconds
        with org.buckets.lock:
            org.buckets.limits = dict(config.rate_limits)
            org.buckets.used.clear()
        return jsonify({"ok": True})


def _factor(kind: str, created: float) -> dict[str, Any]:
    provider = {"push": "OKTA", "sms": "OKTA", "token:software:totp": "GOOGLE"}.get(kind, "OKTA")
    return {
        "id": _id("opf" if kind == "push" else "mbl" if kind == "sms" else "uft"),
        "factorType": kind,
        "provider": provider,
        "vendorName": provider,
        "status": "ACTIVE",
        "created": iso(created),
        "lastUpdated": iso(created),
        "profile": {},
    }


# -- the sandbox's wiring (sandbox/registry.py) ----------------------------------------------


def _app_config(wiring: Wiring) -> OktaSimConfig:
    return OktaSimConfig()


def _config_text(wiring: Wiring) -> str:
    return f"""[idps.sandbox_okta]
kind = "okta"
base_url = "{wiring.url}"
"""


def _banner(url: str, config: OktaSimConfig) -> str:
    return f"""  Okta sandbox       {url}/api/v1   Authorization: SSWS {config.api_token}
                     OAuth app {config.client_id} (private_key_jwt, ES256)
                     control API {url}{CONTROL_PREFIX}users"""


SIMULATOR = Simulator(
    name="okta",
    create_app=create_app,
    app_config=_app_config,
    config_text=_config_text,
    # An API token: a PEM's lines would not fit the stack's one-line env files. The connector's
    # OAuth mode is tested against this simulator in tests/unit/test_okta_connector.py.
    secrets={"DESKGATE_IDPS__SANDBOX_OKTA__API_TOKEN": OktaSimConfig.api_token},
    dev_port=8106,
    banner=_banner,
)
