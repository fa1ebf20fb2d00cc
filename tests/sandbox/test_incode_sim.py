"""The Incode simulator over real HTTP: auth, request-new, results API, webhooks, controls."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request

from sandbox.common import serve
from sandbox.incode import IncodeSimConfig, create_app

CFG = IncodeSimConfig(employees=frozenset({"Alice@Acme.test", "E12345"}))
OMNI = {"x-api-key": CFG.api_key, "api-version": "1.0"}
HOOK_SECRET = "hook-client-secret"


@dataclass
class Receiver:
    """A tiny webhook endpoint: records each request, answers queued statuses, then 200."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # A token endpoint for OAuth webhook mode: records each request, issues tok-1, tok-2, ...
    token_url: str = ""
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    token_statuses: list[int] = field(default_factory=list)
    token_ttl: int = 3600

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r["json"] for r in self.received]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, Receiver]]:
    """One receiver and one simulator per module: stopping a server costs ~0.5 s."""
    app = Flask("receiver")
    rec = Receiver(url="")

    @app.post("/hook")
    def hook() -> Response:
        with rec.lock:
            rec.received.append({"headers": dict(request.headers), "json": request.get_json()})
            status = rec.statuses.pop(0) if rec.statuses else 200
        return Response('{"success": true}', status=status, mimetype="application/json")

    @app.post("/token")
    def issue() -> Response:
        with rec.lock:
            rec.token_requests.append(
                {"headers": dict(request.headers), "form": request.form.to_dict(flat=False)}
            )
            status = rec.token_statuses.pop(0) if rec.token_statuses else 200
            body = {"access_token": f"tok-{len(rec.token_requests)}", "expires_in": rec.token_ttl}
        if status != 200:
            body = {"error": "invalid_client"}
        return Response(json.dumps(body), status=status, mimetype="application/json")

    receiver_server = serve(app)
    rec.url = f"{receiver_server.url}/hook"
    rec.token_url = f"{receiver_server.url}/token"
    config = IncodeSimConfig(employees=CFG.employees, webhook_url=rec.url, token_ttl_seconds=600)
    sim_server = serve(create_app(config))
    yield sim_server.url, rec
    sim_server.stop()
    receiver_server.stop()


@pytest.fixture
def receiver(servers: tuple[str, Receiver]) -> Receiver:
    rec = servers[1]
    with rec.lock:
        rec.received.clear()
        rec.statuses.clear()
        rec.token_requests.clear()
        rec.token_statuses.clear()
        rec.token_ttl = 3600
    return rec


@pytest.fixture
def sim(servers: tuple[str, Receiver], receiver: Receiver) -> Iterator[httpx.Client]:
    """A client on a simulator reset to its config: no sessions, faults, limits or calls."""
    with httpx.Client(base_url=servers[0], timeout=10) as client:
        client.post("/_sandbox/reset").raise_for_status()
        client.delete("/_sandbox/faults").raise_for_status()
        client.delete("/_sandbox/rate_limit").raise_for_status()
        client.delete("/_sandbox/calls").raise_for_status()
        yield client


def grant(client: httpx.Client) -> httpx.Response:
    """The client-credentials grant Deskgate makes."""
    return client.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CFG.client_id,
            "client_secret": CFG.client_secret,
            "scope": "openid",
        },
    )


def token(client: httpx.Client) -> str:
    resp = grant(client)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def request_new(
    client: httpx.Client, login_hint: str = "alice@acme.test", **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {
        "integrationReference": CFG.integration_reference,
        "loginHint": login_hint,
        "notification": {"type": "EMAIL", "email": login_hint},
        **extra,
    }
    headers = {**OMNI, "Authorization": f"Bearer {token(client)}"}
    return client.post("/omni/b2b/onboarding/request-new", json=body, headers=headers)


def new_session(client: httpx.Client, login_hint: str = "alice@acme.test") -> str:
    resp = request_new(client, login_hint)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["interviewId"])


def executive(client: httpx.Client) -> dict[str, str]:
    resp = client.post(
        "/executive/log-in",
        json={"email": CFG.executive_email, "password": CFG.executive_password},
        headers=OMNI,
    )
    assert resp.status_code == 200, resp.text
    return {**OMNI, "X-Incode-Hardware-Id": resp.json()["token"]}


def complete(client: httpx.Client, interview_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/_sandbox/sessions/{interview_id}/complete", json=body)


def assert_omni_error(resp: httpx.Response, http: int, status: int | None = None) -> None:
    assert resp.status_code == http, resp.text
    body = resp.json()
    assert set(body) == {"timestamp", "status", "error", "message", "path"}
    assert body["status"] == (status or http)
    assert isinstance(body["timestamp"], int) and body["timestamp"] > 1_600_000_000_000
    assert body["path"] == resp.request.url.path


# -- OAuth token server ------------------------------------------------------------------------


def test_token_grant(sim: httpx.Client) -> None:
    resp = grant(sim)
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "openid"
    assert len(body["access_token"]) >= 20


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "someone-else"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_token_errors(sim: httpx.Client, form: dict[str, str], status: int, error: str) -> None:
    data = {
        "grant_type": "client_credentials",
        "client_id": CFG.client_id,
        "client_secret": CFG.client_secret,
        "scope": "openid",
        **form,
    }
    resp = sim.post("/oauth2/token", data=data)
    assert resp.status_code == status
    assert resp.json()["error"] == error


def test_token_rejects_json_body(sim: httpx.Client) -> None:
    resp = sim.post(
        "/oauth2/token",
        json={
            "grant_type": "client_credentials",
            "client_id": CFG.client_id,
            "client_secret": CFG.client_secret,
        },
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"


def test_expired_token_is_refused_until_refreshed(sim: httpx.Client) -> None:
    old = token(sim)
    assert sim.post("/_sandbox/expire_tokens").json()["expired"] >= 1
    body = {
        "integrationReference": CFG.integration_reference,
        "loginHint": "alice@acme.test",
        "notification": {"type": "EMAIL"},
    }
    resp = sim.post(
        "/omni/b2b/onboarding/request-new",
        json=body,
        headers={**OMNI, "Authorization": f"Bearer {old}"},
    )
    assert_omni_error(resp, 401)
    assert "Expired" in resp.json()["message"]
    fresh = token(sim)
    resp = sim.post(
        "/omni/b2b/onboarding/request-new",
        json=body,
        headers={**OMNI, "Authorization": f"Bearer {fresh}"},
    )
    assert resp.status_code == 200


# -- request-new ------------------------------------------------------------------------------


def test_request_new_success_and_session_record(sim: httpx.Client) -> None:
    resp = request_new(sim, "ALICE@acme.test", linkValidityInMinutes=30, unknownField=1)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"interviewId", "url"}
    assert re.fullmatch(r"[0-9a-f]{24}", body["interviewId"])
    assert body["url"].startswith(f"{CFG.public_url}/v/")
    assert len(body["url"]) > len(f"{CFG.public_url}/v/") + 16

    sessions = sim.get("/_sandbox/sessions").json()["sessions"]
    assert len(sessions) == 1
    s = sessions[0]
    assert s["interviewId"] == body["interviewId"]
    assert s["loginHint"] == "ALICE@acme.test"
    assert s["url"] == body["url"]
    assert s["notification"] == {"type": "EMAIL", "email": "ALICE@acme.test", "phone": None}
    assert s["integrationReference"] == CFG.integration_reference
    assert s["linkValidityInMinutes"] == 30
    assert s["onboardingStatus"] == "UNKNOWN"
    assert s["outcome"] is None
    assert s["deliveries"] == []


def test_request_new_defaults_link_validity_and_accepts_sms(sim: httpx.Client) -> None:
    resp = request_new(sim, "E12345", notification={"type": "SMS", "phone": "+15555550100"})
    assert resp.status_code == 200
    [s] = sim.get("/_sandbox/sessions").json()["sessions"]
    assert s["linkValidityInMinutes"] == 10
    assert s["notification"] == {"type": "SMS", "email": None, "phone": "+15555550100"}


@pytest.mark.parametrize(
    ("drop", "http"),
    [("x-api-key", 401), ("api-version", 400), ("Authorization", 401)],
)
def test_request_new_required_headers(sim: httpx.Client, drop: str, http: int) -> None:
    headers = {**OMNI, "Authorization": f"Bearer {token(sim)}"}
    del headers[drop]
    resp = sim.post(
        "/omni/b2b/onboarding/request-new",
        json={
            "integrationReference": CFG.integration_reference,
            "loginHint": "alice@acme.test",
            "notification": {"type": "EMAIL"},
        },
        headers=headers,
    )
    assert_omni_error(resp, http)
    assert sim.get("/_sandbox/sessions").json()["sessions"] == []


def test_request_new_wrong_api_key_and_version(sim: httpx.Client) -> None:
    bearer = {"Authorization": f"Bearer {token(sim)}"}
    resp = sim.post(
        "/omni/b2b/onboarding/request-new",
        json={},
        headers={**OMNI, **bearer, "x-api-key": "nope"},
    )
    assert_omni_error(resp, 401)
    assert "x-api-key" in resp.json()["message"]
    resp = sim.post(
        "/omni/b2b/onboarding/request-new",
        json={},
        headers={**OMNI, **bearer, "api-version": "2.0"},
    )
    assert_omni_error(resp, 400)
    assert "api-version" in resp.json()["message"]


def test_unknown_employee_is_4301(sim: httpx.Client) -> None:
    resp = request_new(sim, "mallory@acme.test")
    assert_omni_error(resp, 400, 4301)
    assert resp.json()["message"] == (
        "Employee not found. Check the corporate email or employee ID and ensure the employee "
        "is enrolled in Incode."
    )
    assert resp.json()["error"] == "Bad Request"


def test_enrolled_employee_becomes_valid(sim: httpx.Client) -> None:
    assert request_new(sim, "bob@acme.test").status_code == 400
    resp = sim.post("/_sandbox/employees", json={"loginHint": "Bob@Acme.test"})
    assert resp.status_code == 201
    assert "Bob@Acme.test" in sim.get("/_sandbox/employees").json()["employees"]
    assert request_new(sim, "bob@acme.test").status_code == 200

    sim.post("/_sandbox/reset")
    assert sim.get("/_sandbox/sessions").json()["sessions"] == []
    assert sorted(sim.get("/_sandbox/employees").json()["employees"]) == sorted(CFG.employees)
    assert request_new(sim, "bob@acme.test").status_code == 400


@pytest.mark.parametrize(
    ("extra", "http", "message"),
    [
        ({"integrationReference": "other"}, 404, "Integration not found"),
        ({"notification": {"type": "PIGEON"}}, 400, "notification.type"),
        ({"notification": None}, 400, "notification"),
        ({"linkValidityInMinutes": 0}, 400, "linkValidityInMinutes"),
        ({"linkValidityInMinutes": 10081}, 400, "linkValidityInMinutes"),
        ({"linkValidityInMinutes": "10"}, 400, "linkValidityInMinutes"),
        ({"loginHint": 42}, 400, "loginHint"),
    ],
)
def test_request_new_body_validation(
    sim: httpx.Client, extra: dict[str, Any], http: int, message: str
) -> None:
    resp = request_new(sim, **extra)
    assert_omni_error(resp, http)
    assert message in resp.json()["message"]


def test_request_new_malformed_json(sim: httpx.Client) -> None:
    resp = sim.post(
        "/omni/b2b/onboarding/request-new",
        content=b'{"loginHint": ',
        headers={
            **OMNI,
            "Authorization": f"Bearer {token(sim)}",
            "Content-Type": "application/json",
        },
    )
    assert_omni_error(resp, 400)


def test_session_listing_filter_and_order(sim: httpx.Client) -> None:
    first = new_session(sim, "alice@acme.test")
    second = new_session(sim, "E12345")
    third = new_session(sim, "alice@acme.test")
    ids = [s["interviewId"] for s in sim.get("/_sandbox/sessions").json()["sessions"]]
    assert ids == [first, second, third]
    filtered = sim.get("/_sandbox/sessions", params={"loginHint": "ALICE@acme.test"}).json()
    assert [s["interviewId"] for s in filtered["sessions"]] == [first, third]


# -- executive token, status and score --------------------------------------------------------


def test_executive_login_and_reads_require_token(sim: httpx.Client) -> None:
    bad = sim.post(
        "/executive/log-in",
        json={"email": CFG.executive_email, "password": "wrong"},
        headers=OMNI,
    )
    assert_omni_error(bad, 401)
    no_key = sim.post(
        "/executive/log-in",
        json={"email": CFG.executive_email, "password": CFG.executive_password},
        headers={"api-version": "1.0"},
    )
    assert_omni_error(no_key, 401)

    iid = new_session(sim)
    assert_omni_error(sim.get("/omni/get/score", params={"id": iid}, headers=OMNI), 401)
    oauth_as_exec = {**OMNI, "X-Incode-Hardware-Id": token(sim)}
    resp = sim.get("/omni/get/onboarding/status", params={"id": iid}, headers=oauth_as_exec)
    assert_omni_error(resp, 401)

    headers = executive(sim)
    resp = sim.get("/omni/get/onboarding/status", params={"id": "0" * 24}, headers=headers)
    assert_omni_error(resp, 404)
    assert resp.json()["message"] == "Session not found"

    sim.post("/_sandbox/expire_tokens")
    resp = sim.get("/omni/get/onboarding/status", params={"id": iid}, headers=headers)
    assert_omni_error(resp, 401)


def test_status_and_score_before_completion(sim: httpx.Client) -> None:
    iid = new_session(sim)
    headers = executive(sim)
    status = sim.get("/omni/get/onboarding/status", params={"id": iid}, headers=headers)
    assert status.json() == {"onboardingStatus": "UNKNOWN"}
    score = sim.get("/omni/get/score", params={"id": iid, "verbose": "true"}, headers=headers)
    assert score.status_code == 200
    assert score.json()["overall"]["status"] == "UNKNOWN"


def failing_keys(score: dict[str, Any]) -> set[str]:
    """Names of sub-checks with status FAIL/WARN, the way a client derives reasons."""
    found: set[str] = set()
    for module in ("idValidation", "liveness", "faceRecognition"):
        part = score.get(module) or {}
        for name, value in part.items():
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict) and item.get("status") in ("FAIL", "WARN"):
                    found.add(f"{module}.{item.get('key') or name}")
    return found


@pytest.mark.parametrize(
    ("outcome", "overall", "bad_checks"),
    [
        ("pass", "OK", set()),
        (
            "fail",
            "FAIL",
            {"liveness.livenessScore", "liveness.overall", "faceRecognition.overall"},
        ),
        ("review", "WARN", {"idValidation.lastNameMatch", "idValidation.overall"}),
    ],
)
def test_score_after_completion(
    sim: httpx.Client, outcome: str, overall: str, bad_checks: set[str]
) -> None:
    iid = new_session(sim)
    resp = complete(sim, iid, outcome=outcome, webhook="none")
    assert resp.status_code == 200
    assert resp.json() == {
        "interviewId": iid,
        "onboardingStatus": "ONBOARDING_FINISHED",
        "deliveries": [],
    }
    headers = executive(sim)
    status = sim.get("/omni/get/onboarding/status", params={"id": iid}, headers=headers).json()
    assert status == {"onboardingStatus": "ONBOARDING_FINISHED"}
    score = sim.get("/omni/get/score", params={"id": iid}, headers=headers).json()
    assert score["overall"]["status"] == overall
    assert set(score) >= {"idValidation", "liveness", "faceRecognition", "idOcrConfidence"}
    id_validation = score["idValidation"]
    for group in ("photoSecurityAndQuality", "idSpecific", "customFields"):
        assert id_validation[group] and all(
            set(item) == {"value", "status", "key"} for item in id_validation[group]
        )
    assert "appliedRule" in id_validation
    assert "livenessScore" in score["liveness"] and "maskCheck" in score["faceRecognition"]
    assert failing_keys(score) == bad_checks
    assert sim.get("/_sandbox/sessions").json()["sessions"][0]["outcome"] == outcome


@pytest.mark.parametrize(
    ("decision", "status", "event"),
    [
        ("pass", "MANUAL_REVIEW_APPROVED", "SESSION_SUCCEEDED"),
        ("fail", "MANUAL_REVIEW_REJECTED", "SESSION_FAILED"),
    ],
)
def test_manual_review_decision(
    sim: httpx.Client, receiver: Receiver, decision: str, status: str, event: str
) -> None:
    iid = new_session(sim)
    first = complete(sim, iid, outcome="review").json()
    assert first["deliveries"] == [
        {"eventType": "SESSION_PENDING_REVIEW", "status": 200, "attempt": 1}
    ]
    resp = complete(sim, iid, outcome=decision)
    assert resp.status_code == 200
    assert resp.json()["onboardingStatus"] == status
    assert [b["eventType"] for b in receiver.bodies()] == ["SESSION_PENDING_REVIEW", event]
    assert receiver.bodies()[1]["onboardingStatus"] == status
    assert ("identityId" in receiver.bodies()[1]) is (decision == "pass")

    headers = executive(sim)
    read = sim.get("/omni/get/onboarding/status", params={"id": iid}, headers=headers).json()
    assert read == {"onboardingStatus": status}
    score = sim.get("/omni/get/score", params={"id": iid}, headers=headers).json()
    assert score["overall"]["status"] == "WARN"
    assert complete(sim, iid, outcome="pass").status_code == 409


@pytest.mark.parametrize("outcome", ["pass", "fail"])
def test_completing_final_session_conflicts(sim: httpx.Client, outcome: str) -> None:
    iid = new_session(sim)
    assert complete(sim, iid, outcome=outcome, webhook="none").status_code == 200
    resp = complete(sim, iid, outcome="review", webhook="none")
    assert_omni_error(resp, 409)
    assert sim.get("/_sandbox/sessions").json()["sessions"][0]["outcome"] == outcome


def test_complete_validation(sim: httpx.Client) -> None:
    iid = new_session(sim)
    assert complete(sim, iid, outcome="maybe").status_code == 400
    assert complete(sim, iid, outcome="pass", webhook="carrier-pigeon").status_code == 400
    assert complete(sim, iid, outcome="pass", style="EventType").status_code == 400
    assert complete(sim, "f" * 24, outcome="pass").status_code == 404
    assert sim.get("/_sandbox/sessions").json()["sessions"][0]["outcome"] is None


# -- webhooks ---------------------------------------------------------------------------------


def test_session_webhook_event_type_style(sim: httpx.Client, receiver: Receiver) -> None:
    iid = new_session(sim, "Alice@Acme.test")
    resp = complete(sim, iid, outcome="pass")
    assert resp.json()["deliveries"] == [
        {"eventType": "SESSION_SUCCEEDED", "status": 200, "attempt": 1}
    ]
    [req] = receiver.received
    assert req["headers"]["X-Incode-Secret"] == CFG.webhook_secret
    assert req["headers"]["Content-Type"] == "application/json"
    body = req["json"]
    assert set(body) == {
        "eventType",
        "interviewId",
        "loginHint",
        "onboardingStatus",
        "identityId",
        "timestamp",
    }
    assert body["eventType"] == "SESSION_SUCCEEDED"
    assert body["interviewId"] == iid
    assert body["loginHint"] == "Alice@Acme.test"
    assert body["onboardingStatus"] == "ONBOARDING_FINISHED"
    assert re.fullmatch(r"[0-9a-f]{24}", body["identityId"])
    assert body["timestamp"] > 1_600_000_000_000

    [listed] = sim.get("/_sandbox/sessions").json()["sessions"]
    assert [(d["eventType"], d["status"]) for d in listed["deliveries"]] == [
        ("SESSION_SUCCEEDED", 200)
    ]
    assert listed["deliveries"][0]["at"] > 0

    # The same employee keeps the same identity across sessions.
    again = new_session(sim, "alice@acme.test")
    complete(sim, again, outcome="pass")
    assert receiver.bodies()[1]["identityId"] == body["identityId"]


@pytest.mark.parametrize(
    ("outcome", "title"),
    [
        ("fail", "Session Failed"),
        ("review", "Session Pending Review"),
        ("pass", "Session Succeeded"),
    ],
)
def test_session_webhook_event_type_snake_style(
    sim: httpx.Client, receiver: Receiver, outcome: str, title: str
) -> None:
    iid = new_session(sim)
    complete(sim, iid, outcome=outcome, style="event_type")
    [body] = receiver.bodies()
    assert body["event_type"] == title
    assert "eventType" not in body
    assert body["interviewId"] == iid
    assert ("identityId" in body) is (outcome == "pass")


def test_onboarding_status_webhook(sim: httpx.Client, receiver: Receiver) -> None:
    iid = new_session(sim)
    resp = complete(sim, iid, outcome="fail", webhook="onboarding_status")
    assert resp.json()["deliveries"][0]["eventType"] == "ONBOARDING_STATUS"
    [req] = receiver.received
    body = req["json"]
    assert set(body) == {"interviewId", "onboardingStatus", "clientId", "flowId"}
    assert body["interviewId"] == iid
    assert body["onboardingStatus"] == "ONBOARDING_FINISHED"
    assert body["clientId"] == CFG.client_id
    assert body["flowId"]
    assert req["headers"]["X-Incode-Secret"] == CFG.webhook_secret


def test_resend_webhook_n_times(sim: httpx.Client, receiver: Receiver) -> None:
    iid = new_session(sim)
    complete(sim, iid, outcome="fail")
    resp = sim.post(
        f"/_sandbox/sessions/{iid}/webhook", json={"eventType": "SESSION_SUCCEEDED", "times": 3}
    )
    assert resp.status_code == 200
    assert [d["status"] for d in resp.json()["deliveries"]] == [200, 200, 200]
    bodies = receiver.bodies()
    assert [b["eventType"] for b in bodies] == ["SESSION_FAILED", *["SESSION_SUCCEEDED"] * 3]
    assert bodies[1] == bodies[2] == bodies[3]
    assert all(r["headers"]["X-Incode-Secret"] == CFG.webhook_secret for r in receiver.received)
    listed = sim.get("/_sandbox/sessions").json()["sessions"][0]
    assert len(listed["deliveries"]) == 4

    # Without eventType, the session's last event is resent.
    sim.post(f"/_sandbox/sessions/{iid}/webhook", json={})
    assert receiver.bodies()[-1]["eventType"] == "SESSION_FAILED"
    bad = sim.post(f"/_sandbox/sessions/{iid}/webhook", json={"eventType": "NOPE"})
    assert bad.status_code == 400


def test_webhook_retried_after_500(sim: httpx.Client, receiver: Receiver) -> None:
    receiver.statuses.extend([500])
    iid = new_session(sim)
    resp = complete(sim, iid, outcome="pass")
    assert resp.json()["deliveries"] == [
        {"eventType": "SESSION_SUCCEEDED", "status": 500, "attempt": 1},
        {"eventType": "SESSION_SUCCEEDED", "status": 200, "attempt": 2},
    ]
    assert len(receiver.received) == 2
    assert receiver.bodies()[0] == receiver.bodies()[1]


def test_webhook_gives_up_after_three_attempts(sim: httpx.Client, receiver: Receiver) -> None:
    receiver.statuses.extend([503, 500, 502, 200])
    iid = new_session(sim)
    deliveries = complete(sim, iid, outcome="fail").json()["deliveries"]
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 503), (2, 500), (3, 502)]
    assert len(receiver.received) == 3


def test_webhook_target_change_and_unreachable(sim: httpx.Client, receiver: Receiver) -> None:
    resp = sim.put("/_sandbox/webhook", json={"header": "X-Other", "secret": "s3cret"})
    assert resp.json()["header"] == "X-Other"
    iid = new_session(sim)
    complete(sim, iid, outcome="review")
    headers = receiver.received[0]["headers"]
    assert headers["X-Other"] == "s3cret"
    assert "X-Incode-Secret" not in headers

    sim.put("/_sandbox/webhook", json={"url": "http://127.0.0.1:9/closed"})
    deliveries = complete(sim, iid, outcome="pass").json()["deliveries"]
    assert len(deliveries) == 3
    assert all("error" in d and "status" not in d for d in deliveries)
    assert len(receiver.received) == 1


def oauth_mode(sim: httpx.Client, receiver: Receiver, secret: str = HOOK_SECRET) -> None:
    resp = sim.put(
        "/_sandbox/webhook",
        json={
            "oauth_url": receiver.token_url,
            "oauth_client_id": "incode-hooks",
            "oauth_client_secret": secret,
        },
    )
    assert resp.json()["oauth_url"] == receiver.token_url


def test_given_oauth_webhook_mode_then_one_token_is_fetched_and_sent_as_bearer(
    sim: httpx.Client, receiver: Receiver
) -> None:
    oauth_mode(sim, receiver)
    for outcome in ("pass", "fail"):
        complete(sim, new_session(sim), outcome=outcome)

    [token_request] = receiver.token_requests  # cached for the second delivery
    basic = base64.b64encode(b"incode-hooks:hook-client-secret").decode()
    assert token_request["headers"]["Authorization"] == f"Basic {basic}"
    assert token_request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert token_request["form"] == {"grant_type": ["client_credentials"]}
    assert [r["headers"]["Authorization"] for r in receiver.received] == ["Bearer tok-1"] * 2
    assert all("X-Incode-Secret" not in r["headers"] for r in receiver.received)


def test_given_a_401_then_a_new_token_is_fetched(sim: httpx.Client, receiver: Receiver) -> None:
    oauth_mode(sim, receiver)
    receiver.statuses.append(401)  # the receiver revoked tok-1
    deliveries = complete(sim, new_session(sim), outcome="pass").json()["deliveries"]
    assert [d["status"] for d in deliveries] == [401, 200]
    assert [r["headers"]["Authorization"] for r in receiver.received] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    assert len(receiver.token_requests) == 2


def test_given_a_token_about_to_expire_then_a_new_one_is_fetched(
    sim: httpx.Client, receiver: Receiver
) -> None:
    receiver.token_ttl = 1  # inside the renewal margin: every delivery asks again
    oauth_mode(sim, receiver)
    for _ in range(2):
        complete(sim, new_session(sim), outcome="fail")
    assert [r["headers"]["Authorization"] for r in receiver.received] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_given_the_token_endpoint_refuses_then_no_webhook_is_sent(
    sim: httpx.Client, receiver: Receiver
) -> None:
    oauth_mode(sim, receiver, secret="wrong")
    receiver.token_statuses.extend([401, 401, 401])
    deliveries = complete(sim, new_session(sim), outcome="pass").json()["deliveries"]
    assert [d["error"] for d in deliveries] == [
        "WebhookTokenError: token endpoint answered 401"
    ] * 3
    assert receiver.received == []


def test_oauth_webhook_mode_from_config() -> None:
    config = IncodeSimConfig(
        webhook_url="http://127.0.0.1:9/hook",
        webhook_oauth_url="http://127.0.0.1:9/token",
        webhook_oauth_client_id="incode-hooks",
        webhook_oauth_client_secret="hook-client-secret",
    )
    target = create_app(config).test_client().get("/_sandbox/webhook").get_json()
    assert target["oauth_url"] == "http://127.0.0.1:9/token"
    assert target["oauth_client_id"] == "incode-hooks"


# -- Controls: faults, rate limit, call counts ------------------------------------------------


def test_fault_injection_uses_omni_error_shape(sim: httpx.Client) -> None:
    sim.post(
        "/_sandbox/faults",
        json={"path_prefix": "/omni/b2b", "status": 503, "count": 1, "retry_after": 2},
    )
    resp = request_new(sim)
    assert_omni_error(resp, 503)
    assert resp.headers["Retry-After"] == "2"
    assert request_new(sim).status_code == 200


def test_rate_limit_and_call_counts(sim: httpx.Client) -> None:
    sim.delete("/_sandbox/calls")
    sim.put("/_sandbox/rate_limit", json={"requests": 2, "per_seconds": 60})
    bearer = token(sim)  # 1st counted request
    headers = {**OMNI, "Authorization": f"Bearer {bearer}"}
    body = {
        "integrationReference": CFG.integration_reference,
        "loginHint": "alice@acme.test",
        "notification": {"type": "EMAIL"},
    }
    ok = sim.post("/omni/b2b/onboarding/request-new", json=body, headers=headers)
    assert ok.status_code == 200
    limited = sim.post("/omni/b2b/onboarding/request-new", json=body, headers=headers)
    assert_omni_error(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1
    sim.delete("/_sandbox/rate_limit")

    counts = sim.get("/_sandbox/calls").json()["counts"]
    assert counts == {
        "POST /oauth2/token": 1,
        "POST /omni/b2b/onboarding/request-new": 2,
    }
    assert len(sim.get("/_sandbox/sessions").json()["sessions"]) == 1


def test_unknown_route_has_omni_error_shape(sim: httpx.Client) -> None:
    assert_omni_error(sim.get("/omni/nope", headers=OMNI), 404)


def test_reuse_session_hands_out_an_existing_session_once_as_it_stands(sim: httpx.Client) -> None:
    old = new_session(sim)
    headers = executive(sim)
    sim.post(f"/_sandbox/sessions/{old}/complete", json={"outcome": "pass", "webhook": "none"})
    assert sim.put("/_sandbox/reuse_session", json={"interviewId": "0" * 24}).status_code == 404
    assert sim.put("/_sandbox/reuse_session", json={}).status_code == 400
    sim.put("/_sandbox/reuse_session", json={"interviewId": old}).raise_for_status()
    assert new_session(sim, "E12345") == old  # whoever asks
    status = sim.get("/omni/get/onboarding/status", params={"id": old}, headers=headers).json()
    assert status == {"onboardingStatus": "ONBOARDING_FINISHED"}  # its old result stands
    assert new_session(sim) != old  # once only
    assert len(sim.get("/_sandbox/sessions").json()["sessions"]) == 2
