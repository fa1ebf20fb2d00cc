"""Incode's OAuth webhook mode (reference §5c.2): Incode is the OAuth client and we the server.

Incode POSTs ``grant_type=client_credentials`` with ``Authorization: Basic
base64(client_id:client_secret)`` to ``/webhooks/incode/token``, and sends the token it gets as
``Authorization: Bearer <token>`` on its webhooks. Errors follow RFC 6749 §5.2.

Tokens live in Redis as ``p:wtok:<sha256(token)>`` -> client id, expiring with the token: a Redis
dump holds no usable token, and every web worker accepts what any of them issued.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import structlog
from flask import Blueprint, Response, current_app, jsonify, request
from redis import Redis

from config.settings import IncodeConfig
from connectors.ticketing import HeaderLookup

log = structlog.get_logger("deskgate.webhooks")
incode_oauth = Blueprint("incode_oauth", __name__)

TOKEN_BYTES = 32


@dataclass(frozen=True)
class WebhookTokens:
    redis: Redis[str]
    prefix: str

    def _key(self, token: str) -> str:
        return f"{self.prefix}:wtok:{hashlib.sha256(token.encode()).hexdigest()}"

    def issue(self, client_id: str, ttl: int) -> str:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self.redis.set(self._key(token), client_id, ex=ttl)
        return token

    def holder(self, token: str) -> str | None:
        """The client a live token was issued to, or None."""
        return self.redis.get(self._key(token)) if token else None


def _tokens() -> WebhookTokens:
    store = current_app.extensions["deskgate"].store
    return WebhookTokens(store.redis, store.prefix)


def _same(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from an HTTP Basic header, or None if it is not one."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon else None


def client_matches(presented: tuple[str, str], config: IncodeConfig) -> bool:
    """Constant time. RFC 6749 §2.3.1 form-encodes both parts before Basic; Incode documents
    plain ``client_id:client_secret``. Either spelling of the configured pair is accepted."""
    if config.webhook_oauth_client_id is None or config.webhook_oauth_client_secret is None:
        return False
    expected = (config.webhook_oauth_client_id, config.webhook_oauth_client_secret)
    raw = _same(presented[0], expected[0]) & _same(presented[1], expected[1].get_secret_value())
    decoded = _same(unquote_plus(presented[0]), expected[0]) & _same(
        unquote_plus(presented[1]), expected[1].get_secret_value()
    )
    return raw | decoded


def bearer_of(headers: HeaderLookup) -> str:
    """The bearer token in ``headers`` (read by lower-cased name), or ""."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bearer_valid(token: str, config: IncodeConfig) -> bool:
    """A live token we issued to the client configured now (a replaced client's tokens die)."""
    if not token or config.webhook_oauth_client_id is None:
        return False
    holder = _tokens().holder(token)
    return holder is not None and _same(holder, config.webhook_oauth_client_id)


def _oauth_response(body: dict[str, Any], status: int = 200) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


def _error(status: int, error: str, description: str) -> Response:
    resp = _oauth_response({"error": error, "error_description": description}, status)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="deskgate", charset="UTF-8"'
    return resp


@incode_oauth.post("/webhooks/incode/token")
def token() -> Response:
    config: IncodeConfig = current_app.extensions["deskgate"].settings.incode
    if not config.webhook_oauth:
        return _error(404, "not_found", "OAuth webhook mode is not configured")
    # Client first, so an unauthenticated caller learns nothing about the request's shape.
    presented = basic_credentials(request.headers.get("Authorization", ""))
    if presented is None or not client_matches(presented, config):
        log.warning("incode token request refused: bad client credentials")
        return _error(401, "invalid_client", "client authentication failed")
    if request.mimetype != "application/x-www-form-urlencoded":
        return _error(400, "invalid_request", "body must be application/x-www-form-urlencoded")
    grants = request.form.getlist("grant_type")
    if len(grants) != 1:
        return _error(400, "invalid_request", "grant_type must be given exactly once")
    if grants[0] != "client_credentials":
        return _error(400, "unsupported_grant_type", "only client_credentials is supported")
    ttl = config.webhook_oauth_token_ttl_seconds
    issued = _tokens().issue(config.webhook_oauth_client_id or "", ttl)
    log.info("incode webhook token issued", expires_in=ttl)
    return _oauth_response({"access_token": issued, "token_type": "Bearer", "expires_in": ttl})
