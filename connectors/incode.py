"""Incode Omni: the B2B request-new call, result confirmation, and reading a result as a decision.

Two credentials, each cached per process and refreshed on expiry or on a 401:
- an OAuth client-credentials bearer for ``/omni/b2b/onboarding/request-new``;
- an executive (dashboard user) token for ``/omni/get/score`` and ``/omni/get/onboarding/status``,
  because the reference does not confirm the B2B bearer can read results.

A webhook is only a hint: the decision always comes from reading the score (and, when the score
alone does not decide, the onboarding status), so a forged webhook cannot mark anyone verified.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from config.settings import Channel, IncodeConfig
from connectors.http import (
    AuthFailed,
    Fatal,
    Retriable,
    Unanswered,
    classify,
    json_body,
    new_client,
    request,
    send,
)

SYSTEM = "incode"
EMPLOYEE_NOT_FOUND = 4301
TOKEN_MARGIN = 60.0  # refresh this long before a token's stated expiry
EXECUTIVE_TOKEN_TTL = 12 * 3600.0  # documented as 24 h; refresh well before

Decision = Literal["verified", "failed", "review", "pending"]
FINISHED = frozenset({"ONBOARDING_FINISHED", "POST_PROCESSING_FINISHED"})


class EmployeeNotFound(Fatal):
    """Incode's custom status 4301: the loginHint matches no enrolled employee."""


@dataclass(frozen=True)
class Session:
    interview_id: str
    url: str  # the employee's link: never logged, never written to a ticket


@dataclass(frozen=True)
class Result:
    decision: Decision
    score_status: str  # overall.status: OK, WARN, FAIL, UNKNOWN (or whatever Incode adds)
    onboarding_status: str | None  # read only when the score does not decide
    findings: tuple[str, ...]  # checks that did not pass, e.g. "liveness.livenessScore: FAIL"


def describe_error(response: httpx.Response) -> str:
    body = response.json()
    code = body.get("status")
    message = body.get("message") or body.get("error_description") or body.get("error") or ""
    return f"{message} (code {code})" if code and code != response.status_code else str(message)


def _walk(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    if isinstance(node, dict):
        if "status" in node and isinstance(node.get("status"), str):
            yield path, node
        for key, child in node.items():
            if isinstance(child, dict | list):
                yield from _walk(child, (*path, key))
    elif isinstance(node, list):
        for child in node:
            yield from _walk(child, path)


def findings(score: dict[str, Any]) -> tuple[str, ...]:
    """Every sub-check whose status is not OK, named by module and key."""
    found = []
    for path, check in _walk(score, ()):
        status = str(check.get("status", "")).upper()
        if not path or path == ("overall",) or status in ("OK", "", "UNKNOWN"):
            continue
        parts = [p for p in path if p != "overall"]
        key = check.get("key")
        if key and key != parts[-1]:
            parts.append(str(key))
        found.append(f"{'.'.join(parts)}: {status}")
    # A module's own overall adds nothing when one of its checks is already named.
    named = [f for f in found if not any(o.startswith(f.split(":")[0] + ".") for o in found)]
    return tuple(dict.fromkeys(named))


def interpret(score: dict[str, Any], onboarding_status: str | None) -> Result:
    """Incode's documented rule: decide on ``overall.status`` (OK / WARN / FAIL), never on numbers.

    OK and FAIL decide. Otherwise a manual review decision in the onboarding status decides; a
    finished session with WARN/UNKNOWN (or a status Incode adds later) needs review; an unfinished
    session is still pending.
    """
    overall = score.get("overall") if isinstance(score.get("overall"), dict) else {}
    status = str((overall or {}).get("status") or "UNKNOWN").upper()
    checks = findings(score)
    if status == "OK":
        return Result("verified", status, onboarding_status, checks)
    if status == "FAIL":
        return Result("failed", status, onboarding_status, checks)
    if onboarding_status == "MANUAL_REVIEW_APPROVED":
        return Result("verified", status, onboarding_status, checks)
    if onboarding_status == "MANUAL_REVIEW_REJECTED":
        return Result("failed", status, onboarding_status, checks)
    if onboarding_status in FINISHED:
        return Result("review", status, onboarding_status, checks)
    return Result("pending", status, onboarding_status, checks)


class _CachedToken:
    """A token shared by the threads of one process; refreshed when near expiry or rejected."""

    def __init__(self, fetch: Callable[[], tuple[str, float]]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._value: str | None = None
        self._expires = 0.0

    def get(self, *, stale: str | None = None) -> str:
        with self._lock:
            # ``stale`` is the token a 401 rejected: refresh unless another thread already did.
            if self._value is None or self._value == stale or time.time() >= self._expires:
                try:
                    token, ttl = self._fetch()
                except Unanswered as exc:  # asking for a token twice harms no one
                    raise Retriable(exc.system, exc.reason, exc.status) from None
                self._value, self._expires = token, time.time() + max(ttl - TOKEN_MARGIN, 1.0)
            return self._value


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
        self._bearer = _CachedToken(self._fetch_bearer)
        self._executive = _CachedToken(self._fetch_executive)

    def close(self) -> None:
        self.api.close()
        self.auth.close()

    # -- credentials -----------------------------------------------------------------------

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
        response = send(self.api, SYSTEM, method, path, **kwargs)
        _raise_custom(response)
        classify(SYSTEM, response, describe_error)
        body = json_body(SYSTEM, response)
        _raise_custom(response, body)  # some Omni endpoints answer 200 with an error inside
        return body

    def _authorized(
        self, token: _CachedToken, header: str, prefix: str, method: str, path: str, **kw: Any
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
            raise Retriable(SYSTEM, "request-new response carries no interviewId")
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
        """Read the result; the onboarding status is read only when the score does not decide."""
        score = self.score(interview_id)
        result = interpret(score, None)
        if result.decision in ("verified", "failed"):
            return result
        return interpret(score, self.onboarding_status(interview_id))


def _raise_custom(response: httpx.Response, body: dict[str, Any] | None = None) -> None:
    """Turn Omni's custom status codes (in the error body) into typed errors."""
    if body is None:
        if response.status_code < 400:
            return
        try:
            parsed = response.json()
        except ValueError:
            return
        if not isinstance(parsed, dict):
            return
        body = parsed
    if body.get("status") == EMPLOYEE_NOT_FOUND:
        raise EmployeeNotFound(SYSTEM, "employee not found (code 4301)", response.status_code)
