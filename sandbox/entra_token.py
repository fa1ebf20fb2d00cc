"""The Entra ID simulator's identity platform half: app registrations, the token endpoint
(``POST /{tenant}/oauth2/v2.0/token``, client credentials) and reading the tokens it issued.

From Microsoft's client-credentials and certificate-credentials pages: the form carries
``grant_type=client_credentials``, ``client_id``, ``scope`` (``https://graph.microsoft.com/.default``
for Graph) and either ``client_secret`` or ``client_assertion_type`` (jwt-bearer) with
``client_assertion``: an RS256 JWT whose ``x5t`` header is the base64url SHA-1 thumbprint of a
certificate registered on the app, ``aud`` the token endpoint, ``iss`` = ``sub`` = the client
id, within ``nbf``..``exp``. Refusals are AADSTS bodies. The access token is a JWT whose
``roles`` claim lists the application permissions granted when it was issued (signed here with
a key of the simulator's own).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Response, jsonify

from sandbox.entra_directory import Actor, GraphError, iso, new_id

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Each refusal: HTTP status, ``error``, the AADSTS code, its description. Where Microsoft lists
# no code for a case (both credentials sent), the simulator refuses it anyway.
REFUSALS: dict[str, tuple[int, str, int, str]] = {
    "tenant": (400, "invalid_request", 90002, "Tenant not found."),
    "grant": (400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."),
    "client": (400, "unauthorized_client", 700016,
               "Application with identifier was not found in the directory."),
    "scope": (400, "invalid_scope", 70011,
              "The provided value for the input parameter 'scope' is not valid."),
    "both": (400, "invalid_request", 90015, "Only one client credential may be presented."),
    "none": (400, "invalid_client", 7000218, "The request body must contain the following "
             "parameter: 'client_assertion' or 'client_secret'."),
    "secret": (401, "invalid_client", 7000215, "Invalid client secret provided."),
    "assertion_type": (400, "invalid_request", 700010, "Invalid client assertion type."),
    "signature": (401, "invalid_client", 700027, "Client assertion failed signature "
                  "validation."),
    "issuer": (401, "invalid_client", 700021, "Client assertion application identifier "
               "doesn't match 'client_id' parameter."),
    "audience": (401, "invalid_client", 700027, "Client assertion audience claim does not "
                 "match the token endpoint."),
    "time": (401, "invalid_client", 700024, "Client assertion is not within its valid time "
             "range."),
}  # fmt: skip


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


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def aadsts(reason: str) -> Response:
    status, error, code, description = REFUSALS[reason]
    trace, correlation, now = new_id(), new_id(), iso(time.time())
    resp = jsonify(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace} "
            f"Correlation ID: {correlation} Timestamp: {now}",
            "error_codes": [code],
            "timestamp": now.replace("T", " "),
            "trace_id": trace,
            "correlation_id": correlation,
        }
    )
    resp.status_code = status
    return resp


TOKEN_HEADER = b64url(b'{"typ":"JWT","alg":"HS256"}')


class Tokens:
    """The tenant's token endpoint and the Graph side's check of a bearer token."""

    def __init__(self, tenant_id: str, apps: dict[str, App], ttl: int) -> None:
        self.tenant_id, self.apps, self.ttl = tenant_id, apps, ttl
        self.key = new_id().encode()

    def issue(self, tenant: str, form: Any, endpoint: str) -> Response:
        """Answer a token request; ``endpoint`` is this endpoint's URL (an assertion's aud)."""
        registered = self.apps.get(form.get("client_id", ""))
        secret, assertion = form.get("client_secret"), form.get("client_assertion")
        refused = (
            "tenant" if tenant != self.tenant_id
            else "grant" if form.get("grant_type") != "client_credentials"
            else "client" if registered is None
            else "scope" if form.get("scope") != GRAPH_SCOPE
            else "both" if secret is not None and assertion is not None
            else self._assertion(registered, assertion, form, endpoint) if assertion is not None
            else "none" if secret is None
            else None if registered.secret and hmac.compare_digest(
                secret.encode(), registered.secret.encode())
            else "secret"
        )  # fmt: skip
        if refused is not None or registered is None:
            return aadsts(refused or "client")
        now = int(time.time())
        claims = {
            "aud": "https://graph.microsoft.com", "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now, "nbf": now, "exp": now + self.ttl, "appid": registered.client_id,
            "oid": registered.service_principal_id, "tid": tenant, "idtyp": "app",
            "roles": sorted(registered.permissions),
        }  # fmt: skip
        signed = f"{TOKEN_HEADER}.{b64url(json.dumps(claims).encode())}"
        mac = hmac.new(self.key, signed.encode(), hashlib.sha256).digest()
        token = f"{signed}.{b64url(mac)}"
        resp = jsonify({"token_type": "Bearer", "expires_in": self.ttl,
                        "ext_expires_in": self.ttl, "access_token": token})  # fmt: skip
        resp.headers["Cache-Control"] = "no-store, no-cache"
        return resp

    def _assertion(self, registered: App, assertion: str, form: Any, endpoint: str) -> str | None:
        """Which check a certificate assertion fails, if any."""
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return "assertion_type"
        try:
            head, body, signature = assertion.split(".")
            header, claims = json.loads(unb64url(head)), json.loads(unb64url(body))
            key = serialization.load_pem_public_key(
                registered.certificates[unb64url(header["x5t"]).hex()].encode()
            )
            if header.get("alg") != "RS256" or not isinstance(key, rsa.RSAPublicKey):
                return "signature"
            key.verify(unb64url(signature), f"{head}.{body}".encode(), padding.PKCS1v15(),
                       hashes.SHA256())  # fmt: skip
        except (ValueError, KeyError, TypeError, InvalidSignature):
            return "signature"
        now = time.time()
        if claims.get("iss") != registered.client_id or claims.get("sub") != registered.client_id:
            return "issuer"
        if claims.get("aud") != endpoint:
            return "audience"
        if not float(claims.get("nbf", now)) - 300 <= now < float(claims.get("exp", 0)):
            return "time"
        return None

    def caller(self, authorization: str) -> tuple[App, frozenset[str]]:
        """The app behind a ``Bearer`` header and the permissions its token carries."""
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        if not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            head, body, signature = token.split(".")
            mac = hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest()
            valid = hmac.compare_digest(unb64url(signature), mac)
            claims = json.loads(unb64url(body)) if valid else None
        except (ValueError, TypeError):
            claims = None
        if not isinstance(claims, dict):
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Access token validation failure. Invalid signature.")  # fmt: skip
        if claims["exp"] <= time.time():
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Lifetime validation failed, the token is expired.")  # fmt: skip
        caller = self.apps.get(claims["appid"])
        if caller is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Unknown application.")
        return caller, frozenset(claims.get("roles") or ())
