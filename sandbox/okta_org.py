"""The Okta simulator's org: its configuration, its users, rate-limit buckets and the shapes
Okta answers in (users with ``_links``, error bodies). ``sandbox/okta.py`` serves it."""

from __future__ import annotations

import hashlib
import math
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Response, jsonify

from sandbox.okta_log import LogQueryError, SystemLog, iso

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


def new_id(prefix: str) -> str:
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


def bucket_of(method: str, path: str) -> str:
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

    def find(self, id_or_login: str) -> dict[str, Any] | None:
        """A user by id or login (Okta takes either in the path)."""
        with self.lock:
            if id_or_login in self.users:
                return self.users[id_or_login]
            wanted = id_or_login.lower()
            return next(
                (u for u in self.users.values() if u["profile"]["login"].lower() == wanted), None
            )

    @staticmethod
    def target(user: dict[str, Any]) -> dict[str, Any]:
        """The user as a System Log ``target`` (or as the actor of their own action)."""
        name = f"{user['profile'].get('firstName', '')} {user['profile'].get('lastName', '')}"
        return {
            "id": user["id"],
            "type": "User",
            "alternateId": user["profile"]["login"],
            "displayName": name.strip(),
            "detailEntry": None,
        }


def user_json(org_url: str, user: dict[str, Any]) -> dict[str, Any]:
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


def admin_actor(login: str) -> dict[str, Any]:
    return {
        "id": "00u" + hashlib.sha256(login.encode()).hexdigest()[:17],
        "type": "User",
        "alternateId": login,
        "displayName": login.split("@")[0],
        "detailEntry": None,
    }


def set_status(user: dict[str, Any], status: str) -> None:
    user["status"] = status
    user["statusChanged"] = user["lastUpdated"] = iso(time.time())


def log_error(exc: LogQueryError) -> Response:
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


def fault_response(status: int, text: str) -> Response:
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


def factor(kind: str, created: float) -> dict[str, Any]:
    provider = {"push": "OKTA", "sms": "OKTA", "token:software:totp": "GOOGLE"}.get(kind, "OKTA")
    return {
        "id": new_id("opf" if kind == "push" else "mbl" if kind == "sms" else "uft"),
        "factorType": kind,
        "provider": provider,
        "vendorName": provider,
        "status": "ACTIVE",
        "created": iso(created),
        "lastUpdated": iso(created),
        "profile": {},
    }
