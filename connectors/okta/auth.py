"""How the Okta connector authenticates: an API token (``SSWS``), or an OAuth service app's
bearer token from the org authorization server (``POST /oauth2/v1/token``, client credentials,
``private_key_jwt``: a client assertion signed with the app's private key, a new ``jti`` each
time, since Okta refuses a reused one). One token is cached per process and replaced when a call
is answered 401."""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from connectors.http import AuthFailed, Fatal, Retriable, json_body, send
from connectors.okta.config import OktaIdpConfig
from connectors.token_cache import CachedToken

SYSTEM = "okta"
TOKEN_PATH = "/oauth2/v1/token"  # noqa: S105 (a path)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_SECONDS = 300  # Okta accepts up to an hour; a short one is worth less if it leaks


def client_assertion(config: OktaIdpConfig, now: float | None = None) -> str:
    """The signed JWT that proves the app: ``iss`` = ``sub`` = client id, ``aud`` = the token
    endpoint, a fresh ``jti``; RS256 for an RSA key, ES256 for an EC one."""
    assert config.client_id is not None and config.private_key is not None
    key = load_pem_private_key(config.private_key.get_secret_value().encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise Fatal(SYSTEM, "private_key must be an RSA or EC key")
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": config.client_id,
        "sub": config.client_id,
        "aud": f"{config.base}{TOKEN_PATH}",
        "iat": issued,
        "exp": issued + ASSERTION_SECONDS,
        "jti": str(uuid.uuid4()),
    }
    algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    headers = {"kid": config.key_id} if config.key_id else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


class OktaAuth(httpx.Auth):
    """``SSWS <token>``, or ``Bearer <token>`` fetched when missing or near expiry, and once more
    on a 401 (then the request is sent again, once)."""

    def __init__(self, config: OktaIdpConfig, client: httpx.Client) -> None:
        self.config = config
        self.client = client  # reaches the org's token endpoint; sends no credentials itself
        self.token = CachedToken(self._fetch)
        self.granted: tuple[str, ...] = ()  # the scopes of the last token Okta issued

    def fetch(self) -> tuple[str, float]:
        """A new token, past the cache (``deskgate doctor``)."""
        return self._fetch()

    def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "scope": " ".join(self.config.scopes),
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(self.config),
        }
        response = send(self.client, SYSTEM, "POST", TOKEN_PATH, data=form)
        if response.status_code >= 500:
            raise Retriable(SYSTEM, "the token endpoint failed", response.status_code)
        body = json_body(SYSTEM, response)
        if response.status_code != 200:
            error = f"{body.get('error', 'refused')}: {body.get('error_description', '')}"
            raise AuthFailed(SYSTEM, f"the OAuth token request was refused ({error})")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise Retriable(SYSTEM, "token response carries no access_token")
        self.granted = tuple(str(body.get("scope", "")).split())
        ttl = body.get("expires_in")
        return token, float(ttl) if isinstance(ttl, int | float) else 3600.0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.config.api_token is not None:
            request.headers["Authorization"] = f"SSWS {self.config.api_token.get_secret_value()}"
            yield request
            return
        token = self.token.get()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.token.get(stale=token)}"
            yield request
