"""Incode Omni simulator: OAuth token server, B2B "Request New Onboarding", results API, webhooks.

One Flask app plays both ``auth.incode.com`` (``/oauth2/token``) and the Omni API, because
Deskgate only needs two base URLs pointed somewhere. Requests and responses have Incode's own
shapes; where the vendor leaves a behaviour open the simulator picks a strict but plausible one,
so that client bugs surface here rather than in production.

The employee's side of a session (opening the link, ID + selfie capture) is driven through the
control API: ``POST /_sandbox/sessions/<interviewId>/complete`` sets the outcome, the score and
delivers the session webhook synchronously, so tests are deterministic.

``PUT /_sandbox/reuse_session`` with ``{"interviewId": ...}`` makes the next request-new answer
with that existing session (its link and whatever result it already has) instead of a new one.
Incode documents nothing about interviewIds being unique or handed out again, so a client must
not assume either; this fault lets a test show Deskgate refuses a session it has seen before.

Webhooks carry the static secret header, or, in OAuth webhook mode (the
``webhook_oauth_*`` config fields, or ``PUT /_sandbox/webhook`` with ``oauth_url``,
``oauth_client_id``, ``oauth_client_secret``), a bearer token fetched from the receiver's token
endpoint with HTTP Basic client credentials, cached until shortly before it expires and fetched
again after a 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

import httpx
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox.common import CONTROL_PREFIX, Controls, WebhookClient, on_stop
from sandbox.options import Wiring
from sandbox.simulator import Simulator

API_VERSION = "1.0"
EXECUTIVE_TOKEN_TTL_SECONDS = 24 * 3600
DEFAULT_LINK_VALIDITY_MINUTES = 10
MAX_LINK_VALIDITY_MINUTES = 7 * 24 * 60
EMPLOYEE_NOT_FOUND = 4301
EMPLOYEE_NOT_FOUND_MESSAGE = (
    "Employee not found. Check the corporate email or employee ID and ensure the employee is "
    "enrolled in Incode."
)

# Real Incode retries failed webhooks 5 times, starting at 30 s with a x2.5 backoff (~32 min in
# total). The simulator compresses that to 2 quick retries so a test sees retries in < 0.5 s.
WEBHOOK_TIMEOUT_SECONDS = 10.0
WEBHOOK_RETRY_DELAYS = (0.1, 0.3)
WEBHOOK_SUCCESS = frozenset({200, 204})
WEBHOOK_TOKEN_MARGIN_SECONDS = 5.0  # a cached webhook token is renewed this long before expiry

# Session-webhook event types, as C-JIRA reads them; the "event_type" style sends the spaced title
# case that some production tenants use ("Session Succeeded").
SESSION_EVENTS = (
    "SESSION_STARTED",
    "SESSION_PROGRESS",
    "SESSION_SUCCEEDED",
    "SESSION_FAILED",
    "SESSION_PENDING_REVIEW",
    "IDENTITY_ENROLLED",
)
# Marker used in delivery records for the per-module onboarding-status webhook.
ONBOARDING_STATUS_EVENT = "ONBOARDING_STATUS"
EVENTS_WITH_IDENTITY = frozenset({"SESSION_SUCCEEDED", "IDENTITY_ENROLLED"})

OUTCOME_EVENTS: dict[str, str] = {
    "pass": "SESSION_SUCCEEDED",
    "fail": "SESSION_FAILED",
    "review": "SESSION_PENDING_REVIEW",
}
WEBHOOK_MODES = ("session", "onboarding_status", "none")
STYLES = ("eventType", "event_type")


@dataclass
class IncodeSimConfig:
    api_key: str = "sandbox-incode-api-key"
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-client-secret"
    integration_reference: str = "sandbox-helpdesk-integration"
    executive_email: str = "admin@acme.test"
    executive_password: str = "sandbox-exec-password"
    employees: frozenset[str] = frozenset()  # loginHints enrolled in the directory
    webhook_url: str | None = None  # where session webhooks go
    webhook_secret_header: str = "x-incode-secret"
    webhook_secret: str = "sandbox-incode-webhook-secret"
    # OAuth webhook mode: get a token from this URL with these credentials, send it as a bearer.
    webhook_oauth_url: str | None = None
    webhook_oauth_client_id: str | None = None
    webhook_oauth_client_secret: str | None = None
    token_ttl_seconds: int = 3600
    public_url: str = "https://verify.sandbox.incode.test"  # base of the verification links


@dataclass
class WebhookTarget:
    """Where and how webhooks are delivered; ``secret=None`` sends no custom header at all.
    With ``oauth_url`` set, a bearer token goes instead of the header."""

    url: str | None
    header: str
    secret: str | None
    oauth_url: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = None

    @property
    def oauth(self) -> tuple[str, str, str] | None:
        if self.oauth_url is None:
            return None
        return (self.oauth_url, self.oauth_client_id or "", self.oauth_client_secret or "")


class WebhookTokenError(Exception):
    """The receiver's token endpoint gave no usable token."""


@dataclass
class Session:
    interview_id: str
    login_hint: str
    notification: dict[str, str | None]
    integration_reference: str
    link_validity_minutes: int
    url: str
    created_at: float
    onboarding_status: str = "UNKNOWN"
    score: dict[str, Any] | None = None
    outcome: str | None = None
    last_event: str | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "interviewId": self.interview_id,
            "loginHint": self.login_hint,
            "notification": dict(self.notification),
            "integrationReference": self.integration_reference,
            "linkValidityInMinutes": self.link_validity_minutes,
            "url": self.url,
            "onboardingStatus": self.onboarding_status,
            "outcome": self.outcome,
            "created_at": self.created_at,
            "deliveries": [dict(d) for d in self.deliveries],
        }


class OmniError(Exception):
    """A request the simulator refuses; carries the Omni error fields."""

    def __init__(self, http_status: int, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.status = status if status is not None else http_status


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json(body: Any, status: int = 200) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    return resp


def omni_error(http_status: int, message: str, status: int | None = None) -> Response:
    """Omni's error body; ``status`` may be a custom code (e.g. 4301) on top of the HTTP one."""
    try:
        phrase = HTTPStatus(http_status).phrase
    except ValueError:
        phrase = "Error"
    return _json(
        {
            "timestamp": _now_ms(),
            "status": status if status is not None else http_status,
            "error": phrase,
            "message": message,
            "path": request.path,
        },
        http_status,
    )


def _oauth_error(http_status: int, error: str, description: str) -> Response:
    resp = _json({"error": error, "error_description": description}, http_status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _title_event(event_type: str) -> str:
    """SESSION_PENDING_REVIEW -> "Session Pending Review"."""
    return " ".join(word.capitalize() for word in event_type.split("_"))


# -- score objects ---------------------------------------------------------------------------


def _check(value: str, status: str, key: str | None) -> dict[str, Any]:
    return {"value": value, "status": status, "key": key}


def _unknown_score() -> dict[str, Any]:
    """Before the session finishes there is nothing to score yet."""
    return {"overall": _check("0.0", "UNKNOWN", None)}


def _final_score(outcome: str) -> dict[str, Any]:
    """A fetch-scores object shaped like C-FP's real fixture, with per-module ``overall``s.

    fail: liveness ``livenessScore`` and the face match (``faceRecognition.overall``) fail.
    review: a soft claims-matching mismatch (``customFields.lastNameMatch``) -> WARN, which
    tenants route to manual review.
    """
    fail = outcome == "fail"
    review = outcome == "review"
    liveness_status = "FAIL" if fail else "OK"
    face_status = "FAIL" if fail else "OK"
    claims_status = "WARN" if review else "OK"
    overall_status = "FAIL" if fail else "WARN" if review else "OK"
    return {
        "idValidation": {
            "photoSecurityAndQuality": [
                _check("PASSED", "OK", "tamperCheck"),
                _check("PASSED", "OK", "screenIdLiveness"),
                _check("PASSED", "OK", "paperIdLiveness"),
            ],
            "idSpecific": [
                _check("100", "OK", "documentClassification"),
                _check("100", "OK", "expirationDateValidity"),
                _check("100", "OK", "birthDateValidity"),
            ],
            "customFields": [
                _check("100", "OK", "firstNameMatch"),
                _check("61" if review else "100", claims_status, "lastNameMatch"),
            ],
            "appliedRule": None,
            "overall": _check("83.0" if review else "100.0", claims_status, None),
        },
        "liveness": {
            "livenessScore": _check("12.4" if fail else "98.7", liveness_status, "livenessScore"),
            "photoQuality": _check("84.1", "OK", "photoQuality"),
            "overall": _check("12.4" if fail else "98.7", liveness_status, None),
        },
        "faceRecognition": {
            "existingUser": False,
            "maskCheck": _check("0.0", "OK", "maskCheck"),
            "lensesCheck": _check("0.0", "OK", "lensesCheck"),
            "faceBrightness": _check("73.0", "OK", "faceBrightness"),
            "appliedRule": None,
            "overall": _check("41.2" if fail else "96.3", face_status, None),
        },
        "idOcrConfidence": {"overallConfidence": _check("99.0", "OK", None)},
        "overall": _check("27.0" if fail else "83.0" if review else "97.5", overall_status, None),
    }


# -- the simulator ---------------------------------------------------------------------------


class IncodeSim:
    """All simulator state, guarded by one lock (the server is threaded)."""

    def __init__(self, config: IncodeSimConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.access_tokens: dict[str, float] = {}  # token -> expires at (epoch seconds)
        self.executive_tokens: dict[str, float] = {}
        self.sessions: dict[str, Session] = {}  # insertion order = creation order
        self.reuse_next: str | None = None  # the session the next request-new hands out again
        self.employees: dict[str, str] = {}  # lower-cased loginHint -> as enrolled
        self.identities: dict[str, str] = {}  # lower-cased loginHint -> identityId
        self.webhook = WebhookTarget(None, "", None)
        # Tokens we (as Incode) got from receivers' token endpoints: (url, id, secret) ->
        # (token, expires at). Their own lock: fetching one is an HTTP call.
        self.webhook_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self.webhook_token_lock = threading.Lock()
        self.webhooks = WebhookClient(WEBHOOK_TIMEOUT_SECONDS)  # shared by the delivery threads
        # flowId in onboarding-status webhooks: stable per integration, like a real workflow id.
        self.flow_id = hashlib.sha256(config.integration_reference.encode()).hexdigest()[:24]
        self._reset_locked()

    def _reset_locked(self) -> None:
        self.sessions.clear()
        self.reuse_next = None
        self.identities.clear()
        self.employees = {hint.lower(): hint for hint in sorted(self.config.employees)}
        self.webhook = WebhookTarget(
            self.config.webhook_url,
            self.config.webhook_secret_header,
            self.config.webhook_secret,
            self.config.webhook_oauth_url,
            self.config.webhook_oauth_client_id,
            self.config.webhook_oauth_client_secret,
        )
        with self.webhook_token_lock:
            self.webhook_tokens.clear()

    # -- header / auth checks --------------------------------------------------------------

    def _check_omni_headers(self) -> None:
        api_key = request.headers.get("x-api-key")
        if api_key is None:
            raise OmniError(401, "Missing x-api-key header")
        if not hmac.compare_digest(api_key.encode(), self.config.api_key.encode()):
            raise OmniError(401, "Invalid x-api-key")
        version = request.headers.get("api-version")
        if version is None:
            raise OmniError(400, "Missing api-version header")
        if version != API_VERSION:
            raise OmniError(400, f"Unsupported api-version {version!r}; use {API_VERSION}")

    def _check_token(self, store: dict[str, float], token: str | None, what: str) -> None:
        if not token:
            raise OmniError(401, f"Missing {what}")
        with self.lock:
            expires_at = store.get(token)
        if expires_at is None:
            raise OmniError(401, f"Invalid {what}")
        if expires_at <= time.time():
            raise OmniError(401, f"Expired {what}")

    def _check_bearer(self) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise OmniError(401, "Missing bearer access token")
        self._check_token(self.access_tokens, token.strip(), "bearer access token")

    def _check_executive(self) -> None:
        token = request.headers.get("X-Incode-Hardware-Id")
        self._check_token(self.executive_tokens, token, "X-Incode-Hardware-Id executive token")

    @staticmethod
    def _json_body() -> dict[str, Any]:
        """Strict JSON object body, as the Omni API requires."""
        if request.mimetype != "application/json":
            raise OmniError(415, "Content-Type must be application/json")
        try:
            body = json.loads(request.get_data(as_text=True))
        except ValueError as exc:
            raise OmniError(400, f"Malformed JSON request body: {exc}") from exc
        if not isinstance(body, dict):
            raise OmniError(400, "Request body must be a JSON object")
        return body

    @staticmethod
    def _control_body() -> dict[str, Any]:
        """Lenient body for the control API: empty means {}; any content type accepted."""
        raw = request.get_data(as_text=True)
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise OmniError(400, f"Malformed JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise OmniError(400, "Body must be a JSON object")
        return body

    def _session(self, interview_id: str) -> Session:
        """Caller holds the lock."""
        session = self.sessions.get(interview_id)
        if session is None:
            raise OmniError(404, "Session not found")
        return session

    # -- auth server ------------------------------------------------------------------------

    def oauth_token(self) -> Response:
        if request.mimetype != "application/x-www-form-urlencoded":
            return _oauth_error(
                400, "invalid_request", "Body must be application/x-www-form-urlencoded"
            )
        form = request.form
        grant_type = form.get("grant_type")
        if not grant_type:
            return _oauth_error(400, "invalid_request", "Missing grant_type")
        if grant_type != "client_credentials":
            return _oauth_error(
                400, "unsupported_grant_type", f"Unsupported grant_type {grant_type!r}"
            )
        client_id = form.get("client_id", "")
        client_secret = form.get("client_secret", "")
        if not (
            hmac.compare_digest(client_id.encode(), self.config.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.config.client_secret.encode())
        ):
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        scope = form.get("scope", "openid")
        if scope != "openid":
            return _oauth_error(400, "invalid_scope", f"Unsupported scope {scope!r}")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.access_tokens[token] = time.time() + self.config.token_ttl_seconds
        resp = _json(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.config.token_ttl_seconds,
                "scope": "openid",
            }
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def executive_log_in(self) -> Response:
        self._check_omni_headers()
        body = self._json_body()
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            raise OmniError(400, "email and password are required")
        if not (
            email.lower() == self.config.executive_email.lower()
            and hmac.compare_digest(password.encode(), self.config.executive_password.encode())
        ):
            raise OmniError(401, "Invalid email or password")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.executive_tokens[token] = time.time() + EXECUTIVE_TOKEN_TTL_SECONDS
        return _json({"token": token})

    # -- Omni API ---------------------------------------------------------------------------

    def request_new(self) -> Response:
        self._check_omni_headers()
        self._check_bearer()
        body = self._json_body()

        reference = body.get("integrationReference")
        if not isinstance(reference, str) or not reference:
            raise OmniError(400, "integrationReference is required")
        login_hint = body.get("loginHint")
        if not isinstance(login_hint, str) or not login_hint.strip():
            raise OmniError(400, "loginHint is required")
        notification = body.get("notification")
        if not isinstance(notification, dict):
            raise OmniError(400, "notification is required")
        ntype = notification.get("type")
        if ntype not in ("EMAIL", "SMS"):
            raise OmniError(400, f"notification.type must be EMAIL or SMS, got {ntype!r}")
        for key in ("email", "phone"):
            if notification.get(key) is not None and not isinstance(notification[key], str):
                raise OmniError(400, f"notification.{key} must be a string")
        validity = body.get("linkValidityInMinutes", DEFAULT_LINK_VALIDITY_MINUTES)
        if (
            not isinstance(validity, int)
            or isinstance(validity, bool)
            or not 1 <= validity <= MAX_LINK_VALIDITY_MINUTES
        ):
            raise OmniError(
                400,
                f"linkValidityInMinutes must be an integer between 1 and "
                f"{MAX_LINK_VALIDITY_MINUTES}",
            )
        if reference != self.config.integration_reference:
            raise OmniError(404, "Integration not found")

        interview_id = secrets.token_hex(12)
        url = f"{self.config.public_url.rstrip('/')}/v/{secrets.token_urlsafe(24)}"
        with self.lock:
            if login_hint.strip().lower() not in self.employees:
                raise OmniError(400, EMPLOYEE_NOT_FOUND_MESSAGE, status=EMPLOYEE_NOT_FOUND)
            if self.reuse_next is not None:  # the fault: an old session, as it stands
                reused, self.reuse_next = self.sessions[self.reuse_next], None
                return _json({"interviewId": reused.interview_id, "url": reused.url})
            self.sessions[interview_id] = Session(
                interview_id=interview_id,
                login_hint=login_hint,
                notification={
                    "type": ntype,
                    "email": notification.get("email"),
                    "phone": notification.get("phone"),
                },
                integration_reference=reference,
                link_validity_minutes=validity,
                url=url,
                created_at=time.time(),
            )
        return _json({"interviewId": interview_id, "url": url})

    def _read_session_id(self) -> str:
        self._check_omni_headers()
        self._check_executive()
        interview_id = request.args.get("id")
        if not interview_id:
            raise OmniError(400, "Missing required parameter 'id'")
        return interview_id

    def onboarding_status(self) -> Response:
        interview_id = self._read_session_id()
        with self.lock:
            status = self._session(interview_id).onboarding_status
        return _json({"onboardingStatus": status})

    def score(self) -> Response:
        # verbose=true is accepted (C-PY sends it); the simulator always returns the full object.
        interview_id = self._read_session_id()
        with self.lock:
            score = self._session(interview_id).score
        return _json(score if score is not None else _unknown_score())

    # -- webhooks ---------------------------------------------------------------------------

    def _payload(self, session: Session, event_type: str, style: str) -> dict[str, Any]:
        """Webhook body for ``event_type`` from the session's current state (lock held)."""
        if event_type == ONBOARDING_STATUS_EVENT:
            return {
                "interviewId": session.interview_id,
                "onboardingStatus": session.onboarding_status,
                "clientId": self.config.client_id,
                "flowId": self.flow_id,
            }
        payload: dict[str, Any] = (
            {"event_type": _title_event(event_type)}
            if style == "event_type"
            else {"eventType": event_type}
        )
        payload.update(
            interviewId=session.interview_id,
            loginHint=session.login_hint,
            onboardingStatus=session.onboarding_status,
        )
        if event_type in EVENTS_WITH_IDENTITY:
            key = session.login_hint.strip().lower()
            payload["identityId"] = self.identities.setdefault(key, secrets.token_hex(12))
        payload["timestamp"] = _now_ms()
        return payload

    def _webhook_token(self, client: httpx.Client, oauth: tuple[str, str, str]) -> str:
        """A bearer token for webhooks, from the cache or the receiver's token endpoint: form
        ``grant_type=client_credentials`` with HTTP Basic ``client_id:client_secret``."""
        url, client_id, client_secret = oauth
        with self.webhook_token_lock:
            cached = self.webhook_tokens.get(oauth)
            if cached is not None and time.time() < cached[1] - WEBHOOK_TOKEN_MARGIN_SECONDS:
                return cached[0]
            resp = client.post(
                url, data={"grant_type": "client_credentials"}, auth=(client_id, client_secret)
            )
            if resp.status_code != 200:
                raise WebhookTokenError(f"token endpoint answered {resp.status_code}")
            try:
                body = resp.json()
            except ValueError:
                raise WebhookTokenError("token endpoint answered no JSON") from None
            token, ttl = body.get("access_token"), body.get("expires_in")
            if not isinstance(token, str) or not token or not isinstance(ttl, int | float):
                raise WebhookTokenError("token endpoint answered no access_token/expires_in")
            self.webhook_tokens[oauth] = (token, time.time() + ttl)
            return token

    def _forget_webhook_token(self, oauth: tuple[str, str, str]) -> None:
        with self.webhook_token_lock:
            self.webhook_tokens.pop(oauth, None)

    def _deliver(
        self, target: WebhookTarget, event_type: str, payload: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """POST one webhook with quick retries; one record per attempt. Runs without the lock,
        so a receiver may call back into the simulator (e.g. fetch the score) while handling it.
        """
        if target.url is None:
            return []
        headers = {"Content-Type": "application/json"}
        oauth = target.oauth
        if target.secret is not None and oauth is None:
            headers[target.header] = target.secret
        content = json.dumps(payload)
        attempts: list[dict[str, Any]] = []
        for attempt, delay in enumerate((0.0, *WEBHOOK_RETRY_DELAYS), start=1):
            if delay:
                time.sleep(delay)
            record: dict[str, Any] = {"eventType": event_type, "attempt": attempt}
            try:
                client = self.webhooks.get()
                if oauth is not None:
                    headers["Authorization"] = f"Bearer {self._webhook_token(client, oauth)}"
                resp = client.post(target.url, content=content, headers=headers)
                record["status"] = resp.status_code
                if resp.status_code == 401 and oauth is not None:
                    self._forget_webhook_token(oauth)  # revoked or expired early: get another
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            except WebhookTokenError as exc:
                record["error"] = f"WebhookTokenError: {exc}"
            attempts.append(record)
            if record.get("status") in WEBHOOK_SUCCESS:
                break
        return attempts

    def _send(
        self, session: Session, target: WebhookTarget, event_type: str, payload: dict[str, Any]
    ) -> list[dict[str, Any]]:
        attempts = self._deliver(target, event_type, payload)
        at = time.time()
        with self.lock:
            session.deliveries.extend({**a, "at": at} for a in attempts)
        return attempts

    # -- control API ------------------------------------------------------------------------

    def complete(self, interview_id: str) -> Response:
        body = self._control_body()
        outcome = body.get("outcome")
        if outcome not in OUTCOME_EVENTS:
            raise OmniError(400, "outcome must be one of pass, fail, review")
        mode = body.get("webhook", "session")
        if mode not in WEBHOOK_MODES:
            raise OmniError(400, f"webhook must be one of {', '.join(WEBHOOK_MODES)}")
        style = body.get("style", "eventType")
        if style not in STYLES:
            raise OmniError(400, f"style must be one of {', '.join(STYLES)}")

        with self.lock:
            session = self._session(interview_id)
            if session.outcome in ("pass", "fail"):
                raise OmniError(
                    409, f"Session already final ({session.onboarding_status}); cannot complete"
                )
            if session.outcome == "review":
                # The manual review decision: a human decided, the automated score stays WARN.
                if outcome == "review":
                    raise OmniError(409, "Session is already pending review; decide pass or fail")
                session.onboarding_status = (
                    "MANUAL_REVIEW_APPROVED" if outcome == "pass" else "MANUAL_REVIEW_REJECTED"
                )
            else:
                session.onboarding_status = "ONBOARDING_FINISHED"
                session.score = _final_score(outcome)
            session.outcome = outcome
            event = OUTCOME_EVENTS[outcome]
            session.last_event = event
            if mode == "onboarding_status":
                event = ONBOARDING_STATUS_EVENT
            payload = self._payload(session, event, style)
            target = replace(self.webhook)
            status = session.onboarding_status

        deliveries = [] if mode == "none" else self._send(session, target, event, payload)
        return _json(
            {"interviewId": interview_id, "onboardingStatus": status, "deliveries": deliveries}
        )

    def resend(self, interview_id: str) -> Response:
        body = self._control_body()
        times = body.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= 100:
            raise OmniError(400, "times must be an integer between 1 and 100")
        style = body.get("style", "eventType")
        if style not in STYLES:
            raise OmniError(400, f"style must be one of {', '.join(STYLES)}")
        with self.lock:
            session = self._session(interview_id)
            event = body.get("eventType", session.last_event)
            if event not in (*SESSION_EVENTS, ONBOARDING_STATUS_EVENT):
                raise OmniError(
                    400,
                    f"eventType must be one of {', '.join(SESSION_EVENTS)}, "
                    f"{ONBOARDING_STATUS_EVENT}",
                )
            # One body for all n sends: a duplicate delivery is byte-identical, like a retry.
            payload = self._payload(session, event, style)
            target = replace(self.webhook)
        deliveries: list[dict[str, Any]] = []
        for _ in range(times):
            deliveries.extend(self._send(session, target, event, payload))
        return _json({"interviewId": interview_id, "deliveries": deliveries})

    def reuse_session(self) -> Response:
        interview_id = self._control_body().get("interviewId")
        if not isinstance(interview_id, str):
            raise OmniError(400, "interviewId is required")
        with self.lock:
            self._session(interview_id)  # 404 for a session that does not exist
            self.reuse_next = interview_id
        return _json({"interviewId": interview_id})

    def list_sessions(self) -> Response:
        hint = request.args.get("loginHint")
        with self.lock:
            sessions = [
                s.public()
                for s in self.sessions.values()
                if hint is None or s.login_hint.lower() == hint.lower()
            ]
        return _json({"sessions": sessions})

    def employees_route(self) -> Response:
        if request.method == "GET":
            with self.lock:
                return _json({"employees": list(self.employees.values())})
        hint = self._control_body().get("loginHint")
        if not isinstance(hint, str) or not hint.strip():
            raise OmniError(400, "loginHint is required")
        with self.lock:
            self.employees[hint.strip().lower()] = hint.strip()
        return _json({"loginHint": hint.strip()}, 201)

    def webhook_route(self) -> Response:
        if request.method == "PUT":
            body = self._control_body()
            optional = ("url", "secret", "oauth_url", "oauth_client_id", "oauth_client_secret")
            for key in optional:
                if key in body and body[key] is not None and not isinstance(body[key], str):
                    raise OmniError(400, f"{key} must be a string or null")
            if "header" in body and (not isinstance(body["header"], str) or not body["header"]):
                raise OmniError(400, "header must be a non-empty string")
            with self.lock:
                for key in (*optional, "header"):
                    if key in body:
                        setattr(self.webhook, key, body[key])
        with self.lock:
            target = self.webhook
            return _json(
                {
                    "url": target.url,
                    "header": target.header,
                    "secret": target.secret,
                    "oauth_url": target.oauth_url,
                    "oauth_client_id": target.oauth_client_id,
                    "oauth_client_secret": target.oauth_client_secret,
                }
            )

    def expire_tokens(self) -> Response:
        with self.lock:
            for store in (self.access_tokens, self.executive_tokens):
                for token in store:
                    store[token] = 0.0
            count = len(self.access_tokens) + len(self.executive_tokens)
        return _json({"expired": count})

    def reset(self) -> Response:
        # Issued tokens survive a reset so a client's cached token keeps working between tests.
        with self.lock:
            self._reset_locked()
        return _json({"ok": True})


def create_app(config: IncodeSimConfig) -> Flask:
    """The Incode simulator as a WSGI app; serve it with ``sandbox.common.serve``."""
    sim = IncodeSim(config)
    app = Flask("incode_sim")
    app.extensions["incode_sim"] = sim
    on_stop(app, sim.webhooks.close)
    Controls("incode", omni_error).install(app)

    @app.errorhandler(OmniError)
    def _bad_request(exc: OmniError) -> Response:
        return omni_error(exc.http_status, exc.message, exc.status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return omni_error(exc.code or 500, exc.description or exc.name)

    app.add_url_rule("/oauth2/token", "oauth_token", sim.oauth_token, methods=["POST"])
    app.add_url_rule(
        "/executive/log-in", "executive_log_in", sim.executive_log_in, methods=["POST"]
    )
    app.add_url_rule(
        "/omni/b2b/onboarding/request-new", "request_new", sim.request_new, methods=["POST"]
    )
    app.add_url_rule("/omni/get/onboarding/status", "onboarding_status", sim.onboarding_status)
    app.add_url_rule("/omni/get/score", "score", sim.score)

    app.add_url_rule("/_sandbox/sessions", "sandbox_sessions", sim.list_sessions)
    app.add_url_rule(
        "/_sandbox/reuse_session", "sandbox_reuse_session", sim.reuse_session, methods=["PUT"]
    )
    app.add_url_rule(
        "/_sandbox/sessions/<interview_id>/complete",
        "sandbox_complete",
        sim.complete,
        methods=["POST"],
    )
    app.add_url_rule(
        "/_sandbox/sessions/<interview_id>/webhook",
        "sandbox_resend",
        sim.resend,
        methods=["POST"],
    )
    app.add_url_rule(
        "/_sandbox/employees", "sandbox_employees", sim.employees_route, methods=["GET", "POST"]
    )
    app.add_url_rule(
        "/_sandbox/webhook", "sandbox_webhook", sim.webhook_route, methods=["GET", "PUT"]
    )
    app.add_url_rule(
        "/_sandbox/expire_tokens", "sandbox_expire_tokens", sim.expire_tokens, methods=["POST"]
    )
    app.add_url_rule("/_sandbox/reset", "sandbox_reset", sim.reset, methods=["POST"])
    return app


# -- the sandbox's wiring (sandbox/registry.py) ----------------------------------------------


def _app_config(wiring: Wiring) -> IncodeSimConfig:
    return IncodeSimConfig(
        employees=wiring.options.employees, webhook_url=f"{wiring.webhooks}/incode"
    )


def _config_text(wiring: Wiring) -> str:
    c = IncodeSimConfig
    return f"""[incode]
api_url = "{wiring.url}"
auth_url = "{wiring.url}"
integration_reference = "{c.integration_reference}"
client_id = "{c.client_id}"
executive_email = "{c.executive_email}"
reconcile_after_seconds = {wiring.options.reconcile_after_seconds}
"""


def _banner(url: str, config: IncodeSimConfig) -> str:
    header = f"{config.webhook_secret_header}: {config.webhook_secret}"
    return f"""  Incode sandbox     {url}   enrolled: {", ".join(sorted(config.employees))}
                     control API {url}{CONTROL_PREFIX}sessions
                     webhook secret header: {header}"""


SIMULATOR = Simulator(
    name="incode",
    create_app=create_app,
    app_config=_app_config,
    config_text=_config_text,
    secrets={
        "DESKGATE_INCODE__CLIENT_SECRET": IncodeSimConfig.client_secret,
        "DESKGATE_INCODE__API_KEY": IncodeSimConfig.api_key,
        "DESKGATE_INCODE__EXECUTIVE_PASSWORD": IncodeSimConfig.executive_password,
        "DESKGATE_INCODE__WEBHOOK_SECRET": IncodeSimConfig.webhook_secret,
    },
    dev_port=8103,
    banner=_banner,
    client_timeout=30.0,
)
