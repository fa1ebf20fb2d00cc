"""Incode Omni: the B2B request-new call and result confirmation.

Two credentials, each cached per process and refreshed on expiry or on a 401:
- an OAuth client-credentials bearer for ``/omni/b2b/onboarding/request-new``;
- an executive (dashboard user) token for ``/omni/get/score`` and ``/omni/get/onboarding/status``,
  because the reference does not confirm the B2B bearer can read results.

A webhook is only a hint: the decision always comes from reading the score (and, when the score
alone does not decide, the onboarding status; ``results.py``), so a forged webhook cannot mark
anyone verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from config.settings import Channel, IncodeConfig
from connectors.http import (
    AuthFailed,
    Fatal,
    Retriable,
    Unanswered,
    json_body,
    new_client,
    request,
)
from connectors.incode.results import Result, interpret
from connectors.token_cache import CachedToken

SYSTEM = "incode"
EMPLOYEE_NOT_FOUND = 4301
EXECUTIVE_TOKEN_TTL = 12 * 3600.0  # documented as 24 h; refresh well before


class EmployeeNotFound(Fatal):
    """Incode's custom status 4301: the loginHint matches no enrolled employee."""


@dataclass(frozen=True)
class Session:
    interview_id: str
    url: str  # the employee's link: never logged, never written to a ticket


def describe_error(response: httpx.Response) -> str:
    body = response.json()
    code = body.get("status")
    message = body.get("message") or body.get("error_description") or body.get("error") or ""
    return f"{message} (code {code})" if code and code != response.status_code else str(message)


class IncodeClient:
    def __init__(self, config: IncodeConfig, timeout: float, deadline: float = 30.0) -> None:
        self.config = config
        self.api = new_client(
            config.api_base,
            timeout,
            deadline=deadline,
            headers={
                "x-api-key": config.api_key.get_secret_value(),
                "api-version": "1.0",
                "Content-Type": "application/json",
            },
        )
        self.auth = new_client(config.auth_base, timeout, deadline=deadline)
        self._bearer = CachedToken(self._fetch_bearer)
        self._executive = CachedToken(self._fetch_executive)

    def close(self) -> None:
        self.api.close()
        self.auth.close()

    # -- credentials -----------------------------------------------------------------------

    def fresh_bearer(self) -> tuple[str, float]:
        """A new OAuth bearer and its lifetime, past the cache (``deskgate doctor``)."""
        return self._fetch_bearer()

    def fresh_executive_token(self) -> tuple[str, float]:
        """A new executive token and its lifetime, past the cache (``deskgate doctor``)."""
        return self._fetch_executive()

    def _fetch_bearer(self) -> tuple[str, float]:
        response = request(
            self.auth,
            SYSTEM,
            "POST",
            "/oauth2/token",
            describe_error,
            data={
                "grant_type": "client_credentials",
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret.get_secret_value(),
                "scope": "openid",
            },
        )
        body = json_body(SYSTEM, response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise Retriable(SYSTEM, "token response carries no access_token")
        ttl = body.get("expires_in")
        return token, float(ttl) if isinstance(ttl, int | float) else 300.0  # lifetime unknown

    def _fetch_executive(self) -> tuple[str, float]:
        body = self._omni(
            "POST",
            "/executive/log-in",
            json={
                "email": self.config.executive_email,
                "password": self.config.executive_password.get_secret_value(),
            },
        )
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise Retriable(SYSTEM, "executive log-in response carries no token")
        return token, EXECUTIVE_TOKEN_TTL

    def _omni(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = request(self.api, SYSTEM, method, path, describe_error, check=_custom, **kwargs)
        return json_body(SYSTEM, response)

    def _authorized(
        self, token: CachedToken, header: str, prefix: str, method: str, path: str, **kw: Any
    ) -> dict[str, Any]:
        value = token.get()
        try:
            return self._omni(method, path, headers={header: prefix + value}, **kw)
        except AuthFailed:
            value = token.get(stale=value)  # expired early or revoked: one fresh try
            return self._omni(method, path, headers={header: prefix + value}, **kw)

    # -- calls -----------------------------------------------------------------------------

    def request_new(
        self,
        *,
        login_hint: str,
        channel: Channel,
        destination: str | None,
        validity_minutes: int,
    ) -> Session:
        """Ask Incode to send the employee a link. Without ``destination`` Incode delivers it to
        the contact it holds for ``login_hint`` (what Incode does then is not documented)."""
        notification: dict[str, str] = {"type": channel}
        if destination:
            notification["email" if channel == "EMAIL" else "phone"] = destination
        body = self._authorized(
            self._bearer,
            "Authorization",
            "Bearer ",
            "POST",
            "/omni/b2b/onboarding/request-new",
            json={
                "integrationReference": self.config.integration_reference,
                "loginHint": login_hint,
                "notification": notification,
                "linkValidityInMinutes": validity_minutes,
            },
        )
        interview_id, url = body.get("interviewId"), body.get("url")
        if not isinstance(interview_id, str) or not interview_id:
            # Answered, but without the session: Incode may have sent the link (never ask again).
            raise Unanswered(SYSTEM, "request-new response carries no interviewId")
        return Session(interview_id=interview_id, url=str(url or ""))

    def score(self, interview_id: str) -> dict[str, Any]:
        return self._authorized(
            self._executive, "X-Incode-Hardware-Id", "", "GET", "/omni/get/score",
            params={"id": interview_id},
        )  # fmt: skip

    def onboarding_status(self, interview_id: str) -> str | None:
        body = self._authorized(
            self._executive, "X-Incode-Hardware-Id", "", "GET", "/omni/get/onboarding/status",
            params={"id": interview_id},
        )  # fmt: skip
        status = body.get("onboardingStatus")
        return str(status) if status else None

    def confirm(self, interview_id: str) -> Result:
        """Read the result; the onboarding status is read only when the score does not decide.
        A session that finished between the two reads has a score the first read did not see:
        it is read again, so an unscored session is never taken as finished-and-undecided
        (which would mean manual review)."""
        score = self.score(interview_id)
        result = interpret(score, None)
        if result.decision in ("verified", "failed"):
            return result
        status = self.onboarding_status(interview_id)
        if result.score_status == "UNKNOWN" and interpret(score, status).decision != "pending":
            score = self.score(interview_id)
        return interpret(score, status)


def _custom(response: httpx.Response) -> None:
    """Omni's custom status codes, in the body of an error (or of a 200: some endpoints answer
    that way), as typed errors."""
    try:
        body = response.json()
    except ValueError:
        return
    if isinstance(body, dict) and body.get("status") == EMPLOYEE_NOT_FOUND:
        raise EmployeeNotFound(SYSTEM, "employee not found (code 4301)", response.status_code)
