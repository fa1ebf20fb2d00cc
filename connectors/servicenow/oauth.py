"""How a ServiceNow connector authenticates: Basic, or a bearer token from ``/oauth_token.do``
(password or client-credentials grant), one token shared by the process's threads."""

from __future__ import annotations

from collections.abc import Generator

import httpx

from connectors.http import AuthFailed, Retriable, json_body, new_client, send
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.token_cache import CachedToken

SYSTEM = "servicenow"
TOKEN_PATH = "/oauth_token.do"  # noqa: S105 (a path)
DEFAULT_TOKEN_TTL = 1800.0  # when the token response does not say


class ServiceNowOAuth(httpx.Auth):
    """A bearer token on every request: fetched when missing or expired, and once more on a 401
    (revoked or expired early), then the request is retried once."""

    def __init__(self, client: httpx.Client, form: dict[str, str]) -> None:
        self.client = client  # reaches the instance; sends no credentials of its own
        self.form = form
        self.token = CachedToken(self._fetch)

    def _fetch(self) -> tuple[str, float]:
        response = send(self.client, SYSTEM, "POST", TOKEN_PATH, data=self.form)
        if response.status_code != 200:
            raise AuthFailed(SYSTEM, "the OAuth token request was refused", response.status_code)
        body = json_body(SYSTEM, response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise Retriable(SYSTEM, "token response carries no access_token")
        ttl = body.get("expires_in")
        return token, float(ttl) if isinstance(ttl, int | float) else DEFAULT_TOKEN_TTL

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token.get()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.token.get(stale=token)}"
            yield request

    def close(self) -> None:
        self.client.close()


def auth_for(
    config: ServiceNowDeskConfig, timeout: float, deadline: float
) -> ServiceNowOAuth | tuple[str, str]:
    password = config.password.get_secret_value() if config.password else ""
    if config.auth == "basic":
        return (config.username, password)
    secret = config.oauth_client_secret
    form = {
        "client_id": config.oauth_client_id or "",
        "client_secret": secret.get_secret_value() if secret else "",
    }
    if config.auth == "oauth_password":
        form.update(grant_type="password", username=config.username, password=password)
    else:
        form["grant_type"] = "client_credentials"
    return ServiceNowOAuth(new_client(config.base, timeout, deadline=deadline), form)
