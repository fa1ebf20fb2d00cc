"""Incode's OAuth webhook mode: Incode is the OAuth client and we the server.

Incode POSTs ``grant_type=client_credentials`` with ``Authorization: Basic
base64(client_id:client_secret)`` to ``/webhooks/incode/token``, and sends the token it gets as
``Authorization: Bearer <token>`` on its webhooks. Errors follow RFC 6749 §5.2.

Tokens live in Redis as ``p:wtok:<sha256(token)>`` -> the client id and a fingerprint of the
client secret that minted it, expiring with the token: a Redis dump holds no usable token, every web
worker accepts what any of them issued, and replacing the client or rotating its secret kills the
tokens minted before. During a rotation ``webhook_oauth_client_previous_secret`` is accepted too,
and so are the tokens it minted, until it is removed.
``p:wtoks:<client>`` (a sorted set by expiry) keeps at most ``LIVE_TOKENS_PER_CLIENT``: minting one
more revokes the oldest. The endpoint is rate limited per minute, overall (before the client is
checked, so guessing is slow too) and per client (mints); over a limit: 429 with ``Retry-After``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import structlog
from flask import Blueprint, Response, current_app, jsonify, request
from redis import Redis

from config.settings import IncodeConfig
from connectors.secret_check import matches_any
from connectors.ticketing import HeaderLookup

log = structlog.get_logger("deskgate.webhooks")
incode_oauth = Blueprint("incode_oauth", __name__)

TOKEN_BYTES = 32
# Incode needs one token at a time (two while it renews); a few more absorb its retries.
LIVE_TOKENS_PER_CLIENT = 5
# Per minute. Incode asks about once per token lifetime (an hour by default).
MINTS_PER_CLIENT = 10
FAILURES_PER_MINUTE = 120
RATE_WINDOW_SECONDS = 60

# KEYS: token key, the client's index   ARGV: binding, ttl, now, live tokens allowed
# Expired entries leave the index first; then the oldest live ones beyond the cap are revoked.
_ISSUE = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local excess = redis.call('ZCARD', KEYS[2]) - (tonumber(ARGV[4]) - 1)
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do redis.call('DEL', old) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[2]), KEYS[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""

# KEYS: counter   ARGV: window seconds, limit. 0 while under the limit, else seconds to wait.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if n <= tonumber(ARGV[2]) then return 0 end
local wait = redis.call('TTL', KEYS[1])
if wait < 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]); wait = tonumber(ARGV[1]) end
return wait
"""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def client_secrets(config: IncodeConfig) -> list[str]:
    """The client secrets accepted now: the current one first, then the previous one."""
    pair = (config.webhook_oauth_client_secret, config.webhook_oauth_client_previous_secret)
    return [s.get_secret_value() for s in pair if s is not None]


def binding(config: IncodeConfig, secret: str) -> str:
    """What a token minted with ``secret`` is bound to: the client id and a fingerprint of the
    secret (an HMAC keyed by it, so the stored value does not help anyone guess the secret)."""
    if config.webhook_oauth_client_id is None or not secret:
        return ""
    mac = hmac.new(secret.encode(), b"deskgate webhook token binding", hashlib.sha256)
    return f"{config.webhook_oauth_client_id} {mac.hexdigest()[:32]}"


@dataclass(frozen=True)
class WebhookTokens:
    redis: Redis[str]
    prefix: str

    def _key(self, token: str) -> str:
        return f"{self.prefix}:wtok:{_digest(token)}"

    def issue(self, client_id: str, bound_to: str, ttl: int, now: float) -> str:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        index = f"{self.prefix}:wtoks:{_digest(client_id)[:32]}"
        self.redis.register_script(_ISSUE)(
            keys=[self._key(token), index], args=[bound_to, ttl, now, LIVE_TOKENS_PER_CLIENT]
        )
        return token

    def holder(self, token: str) -> str | None:
        """What a live token is bound to (``binding``), or None."""
        return self.redis.get(self._key(token)) if token else None

    def wait(self, scope: str, limit: int) -> int:
        """Count one request against ``scope``'s limit this window: 0, or seconds to wait."""
        key = f"{self.prefix}:wrate:{scope}"
        return int(
            self.redis.register_script(_COUNT)(keys=[key], args=[RATE_WINDOW_SECONDS, limit])
        )


def _tokens() -> WebhookTokens:
    store = current_app.extensions["deskgate"].store
    return WebhookTokens(store.redis, store.prefix)


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


def client_matches(presented: tuple[str, str], config: IncodeConfig) -> str | None:
    """The configured client secret (current or previous) ``presented`` authenticates with, or
    None. Constant time: every secret is compared. RFC 6749 §2.3.1 form-encodes both parts before
    Basic; Incode documents plain ``client_id:client_secret``. Either spelling is accepted."""
    if config.webhook_oauth_client_id is None:
        return None
    client_id = [config.webhook_oauth_client_id]
    given_id, given_secret = presented
    found = None
    for secret in client_secrets(config):
        raw = matches_any(given_id, client_id) & matches_any(given_secret, [secret])
        decoded = matches_any(unquote_plus(given_id), client_id) & matches_any(
            unquote_plus(given_secret), [secret]
        )
        if (raw | decoded) and found is None:
            found = secret
    return found


def bearer_of(headers: HeaderLookup) -> str:
    """The bearer token in ``headers`` (read by lower-cased name), or ""."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bearer_valid(token: str, config: IncodeConfig) -> bool:
    """A live token we issued to the client and a secret configured now (a replaced client's or a
    retired secret's tokens die)."""
    expected = [binding(config, secret) for secret in client_secrets(config)]
    if not token or not any(expected):
        return False
    holder = _tokens().holder(token)
    return holder is not None and matches_any(holder, expected)


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


def _slow_down(wait: int) -> Response:
    # RFC 6749 has no rate-limit error; temporarily_unavailable is its closest (§4.1.2.1).
    resp = _error(429, "temporarily_unavailable", f"too many token requests; retry in {wait} s")
    resp.headers["Retry-After"] = str(wait)
    return resp


@incode_oauth.post("/webhooks/incode/token")
def token() -> Response:
    config: IncodeConfig = current_app.extensions["deskgate"].settings.incode
    if not config.webhook_oauth:
        return _error(404, "not_found", "OAuth webhook mode is not configured")
    tokens = _tokens()
    # Client first, so an unauthenticated caller learns nothing about the request's shape.
    # Only failures count against the shared limit: a flood of bad requests slows itself down
    # but never locks Incode out (a right client has its own limit below; its secret, 16
    # characters or more, is out of reach of guessing at this rate either way).
    presented = basic_credentials(request.headers.get("Authorization", ""))
    secret = client_matches(presented, config) if presented is not None else None
    if secret is None:
        wait = tokens.wait("failures", FAILURES_PER_MINUTE)
        if wait:
            log.warning("incode token request refused: rate limit", scope="failures")
            return _slow_down(wait)
        log.warning("incode token request refused: bad client credentials")
        return _error(401, "invalid_client", "client authentication failed")
    if request.mimetype != "application/x-www-form-urlencoded":
        return _error(400, "invalid_request", "body must be application/x-www-form-urlencoded")
    grants = request.form.getlist("grant_type")
    if len(grants) != 1:
        return _error(400, "invalid_request", "grant_type must be given exactly once")
    if grants[0] != "client_credentials":
        return _error(400, "unsupported_grant_type", "only client_credentials is supported")
    client_id = config.webhook_oauth_client_id or ""
    wait = tokens.wait(f"client:{_digest(client_id)[:32]}", MINTS_PER_CLIENT)
    if wait:
        log.warning("incode token request refused: rate limit", scope="client")
        return _slow_down(wait)
    ttl = config.webhook_oauth_token_ttl_seconds
    issued = tokens.issue(client_id, binding(config, secret), ttl, time.time())
    log.info("incode webhook token issued", expires_in=ttl)
    return _oauth_response({"access_token": issued, "token_type": "Bearer", "expires_in": ttl})
