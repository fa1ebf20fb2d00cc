"""How the Entra connector authenticates: an app-only token for Microsoft Graph from the tenant's
token endpoint (the client-credentials grant), with a client secret or a certificate's signed
assertion; one token shared by the process's threads, fetched again on a 401."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Generator

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.entra.config import EntraIdpConfig
from connectors.http import AuthFailed, Retriable, classify, json_body, new_client, send
from connectors.token_cache import CachedToken

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 600  # seconds; each token request signs a new one


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_assertion(config: EntraIdpConfig, now: float | None = None) -> str:
    """The certificate credential: a JWT signed with the certificate's key (RS256), naming the
    certificate by its SHA-1 thumbprint (``x5t``) and the token endpoint as its audience."""
    assert config.certificate_key is not None
    key = serialization.load_pem_private_key(
        config.certificate_key.get_secret_value().encode(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)  # the config refuses any other
    issued = int(time.time() if now is None else now)
    header = {"alg": "RS256", "typ": "JWT", "x5t": _b64url(config.thumbprint)}
    claims = {
        "aud": config.token_url,
        "iss": config.client_id,
        "sub": config.client_id,
        "jti": str(uuid.uuid4()),
        "nbf": issued,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
    }
    signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed}.{_b64url(signature)}"


def describe_token_error(response: httpx.Response) -> str:
    """The identity platform's refusal: ``error`` and its AADSTS codes (the description carries
    trace ids and timestamps, and says no more that a reader needs)."""
    body = response.json()
    codes = ", ".join(f"AADSTS{c}" for c in body.get("error_codes") or [])
    return f"{body.get('error', 'refused')}" + (f" ({codes})" if codes else "")


class GraphAuth(httpx.Auth):
    """A bearer token on every Graph request: fetched when missing or near expiry, and once
    more on a 401 (revoked or expired early), then the request is sent again once."""

    def __init__(
        self, system: str, config: EntraIdpConfig, timeout: float, deadline: float
    ) -> None:
        self.system = system
        self.config = config
        base = str(config.login_url).rstrip("/")
        self.client = new_client(base, timeout, deadline=deadline)  # sends no credential itself
        self.token = CachedToken(self._fetch)

    def _form(self) -> dict[str, str]:
        c = self.config
        form = {"grant_type": "client_credentials", "client_id": c.client_id, "scope": GRAPH_SCOPE}
        if c.client_secret is not None:
            form["client_secret"] = c.client_secret.get_secret_value()
        else:
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = client_assertion(c)
        return form

    def _fetch(self) -> tuple[str, float]:
        path = f"/{self.config.tenant_id}/oauth2/v2.0/token"
        response = send(self.client, self.system, "POST", path, data=self._form())
        if 400 <= response.status_code < 500 and response.status_code != 429:
            try:
                reason = describe_token_error(response)
            except ValueError:
                reason = "refused"
            raise AuthFailed(self.system, f"token request refused: {reason}", response.status_code)
        classify(self.system, response, describe_token_error)
        body = json_body(self.system, response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise Retriable(self.system, "token response carries no access_token")
        ttl = body.get("expires_in")
        return token, float(ttl) if isinstance(ttl, int | float) else 3599.0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token.get()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.token.get(stale=token)}"
            yield request

    def close(self) -> None:
        self.client.close()
