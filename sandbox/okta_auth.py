"""How the Okta simulator authenticates a caller, as Okta documents it.

- ``Authorization: SSWS <api token>``: the token acts with the rights of the admin who created
  it, so every scope is granted and the System Log names that admin as the actor.
- OAuth 2.0 for an "API Services" app: ``POST /oauth2/v1/token`` with
  ``grant_type=client_credentials``, the wanted ``scope`` and a ``private_key_jwt`` client
  assertion (the only client authentication Okta accepts for ``okta.*`` scopes). The assertion
  is an RS256/ES256 JWT signed with the app's private key, checked against its registered public
  JWK: ``iss`` = ``sub`` = the client id, ``aud`` = ``<org>/oauth2/v1/token``, ``exp`` at most an
  hour ahead, and a ``jti`` never seen before (a reused one is ``401 invalid_client``). Only the
  app's granted scopes are issued. The answer is ``{"token_type": "Bearer", "expires_in": 3600,
  "access_token", "scope"}``; calls then carry ``Authorization: Bearer <token>``.
- A bearer token lacking the scope a call needs: ``403`` with an empty body and
  ``WWW-Authenticate: Bearer … error="insufficient_scope", scope="…", resource="…"``.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from flask import Response, jsonify, request

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_TTL = 3600  # Okta's org authorization server issues one-hour access tokens, fixed
MAX_ASSERTION_LIFETIME = 3600


@dataclass(frozen=True)
class Caller:
    """Who a request is from: an API token's admin, or an OAuth app with its scopes."""

    kind: str  # "token" | "app"
    client_id: str | None
    scopes: frozenset[str]


@dataclass
class Issued:
    tokens: dict[str, tuple[str, frozenset[str], float]] = field(default_factory=dict)
    jtis: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def oauth_error(status: int, error: str, description: str) -> Response:
    resp = jsonify({"error": error, "error_description": description})
    resp.status_code = status
    return resp


def issue_token(
    issued: Issued,
    *,
    org: str,
    client_id: str,
    public_jwk: dict[str, Any],
    granted: frozenset[str],
    require_dpop: bool = False,
) -> Response:
    """``POST /oauth2/v1/token``, as Okta's org authorization server answers it."""
    form = request.form
    if require_dpop and "DPoP" not in request.headers:
        # Okta turns DPoP on by default for API Services apps made since 2024; without a
        # proof the token request is refused (Deskgate sends none: docs/idp.md says to turn
        # the app's DPoP requirement off).
        return oauth_error(400, "invalid_dpop_proof", "The DPoP proof JWT header is missing.")
    if form.get("grant_type") != "client_credentials":
        return oauth_error(400, "unsupported_grant_type", "The grant_type is not supported.")
    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        return oauth_error(
            401, "invalid_client", "private_key_jwt is required for this client (okta.* scopes)."
        )
    try:
        key = jwt.PyJWK(public_jwk)
        claims = jwt.decode(
            form["client_assertion"],
            key.key,
            algorithms=[key.algorithm_name],  # the registered key's algorithm (RS256, ES256)
            audience=f"{org}/oauth2/v1/token",
            issuer=client_id,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.PyJWTError as exc:
        return oauth_error(401, "invalid_client", f"The client_assertion is invalid: {exc}")
    if claims.get("sub") != client_id:
        return oauth_error(401, "invalid_client", "The client_assertion sub is not the client.")
    if float(claims["exp"]) > time.time() + MAX_ASSERTION_LIFETIME + 5:
        return oauth_error(
            401, "invalid_client", "The client_assertion exp is more than an hour ahead."
        )
    wanted = frozenset(form.get("scope", "").split())
    if not wanted:
        return oauth_error(400, "invalid_scope", "The authorization server requires a scope.")
    if not wanted <= granted:
        extra = " ".join(sorted(wanted - granted))
        return oauth_error(400, "invalid_scope", f"The following scopes are not granted: {extra}")
    with issued.lock:
        if claims["jti"] in issued.jtis:
            return oauth_error(
                401, "invalid_client", "The client_assertion token has already been used."
            )
        issued.jtis.add(str(claims["jti"]))
        token = secrets.token_urlsafe(32)
        issued.tokens[token] = (client_id, wanted, time.time() + TOKEN_TTL)
    return jsonify(
        {
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL,
            "access_token": token,
            "scope": " ".join(sorted(wanted)),
        }
    )


def caller(issued: Issued, api_token: str, all_scopes: frozenset[str]) -> Caller | None:
    """The request's caller, or None when its credentials are missing or wrong."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if header.startswith("SSWS") and not value:
        # Okta's own Python SDK (3.x) sends "SSWS<token>", without the space its documentation
        # shows; an SDK Okta ships must work against Okta, so Okta takes both.
        scheme, value = "SSWS", header.removeprefix("SSWS")
    if scheme == "SSWS" and value and hmac.compare_digest(value.encode(), api_token.encode()):
        return Caller("token", None, all_scopes)
    if scheme == "Bearer" and value:
        with issued.lock:
            found = issued.tokens.get(value)
        if found is not None and found[2] > time.time():
            return Caller("app", found[0], found[1])
    return None


def insufficient_scope(org: str, scope: str) -> Response:
    """Okta's answer to a bearer token without the scope: 403, no body, the reason in a header."""
    resp = Response(status=403)
    resp.headers["WWW-Authenticate"] = (
        f'Bearer authorization_uri="{org}/oauth2/v1/authorize", realm="{org}", '
        f'scope="{scope}", error="insufficient_scope", '
        'error_description="The access token provided does not contain the required scopes.", '
        f'resource="{request.path}"'
    )
    return resp
