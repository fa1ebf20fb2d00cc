"""The Okta simulator answers as Okta documents: status-dependent ``_links``, request ids and
rate-limit headers on every answer, the System Log's polling and bounded modes, and the actors
it names for people acting in the console or on themselves."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sandbox import okta as sim

AUTH = {"Authorization": f"SSWS {sim.OktaSimConfig.api_token}"}


def client(**config: Any) -> FlaskClient:
    return sim.create_app(sim.OktaSimConfig(**config)).test_client()


def user(api: FlaskClient, **body: Any) -> str:
    return str(js(api.post("/_sandbox/users", json={"login": "jane@acme.test", **body}))["id"])


def js(resp: TestResponse) -> Any:
    body = resp.get_json()
    assert body is not None, resp.status
    return body


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def test_links_follow_the_status_and_every_answer_carries_ids_and_limits() -> None:
    api = client()
    uid = user(api)
    active = api.get(f"/api/v1/users/{uid}", headers=AUTH)
    assert "unlock" not in js(active)["_links"] and "resetFactors" in js(active)["_links"]
    api.post(f"/_sandbox/users/{uid}/lock")
    locked = api.get(f"/api/v1/users/{uid}", headers=AUTH)
    assert js(locked)["_links"]["unlock"]["href"].endswith(f"/users/{uid}/lifecycle/unlock")
    refused = api.get(f"/api/v1/users/{uid}", headers={"Authorization": "SSWS wrong"})
    assert (refused.status_code, js(refused)["errorCode"]) == (401, "E0000011")
    assert set(js(refused)) == {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}
    for resp in (active, locked, refused):
        assert resp.headers["X-Okta-Request-Id"]
        assert int(resp.headers["X-Rate-Limit-Reset"]) > time.time()
    assert int(locked.headers["X-Rate-Limit-Remaining"]) < int(active.headers["X-Rate-Limit-Limit"])


def test_a_spent_bucket_answers_429_e0000047_with_its_headers() -> None:
    api = client(rate_limits={"logs": 1})
    assert api.get("/api/v1/logs", headers=AUTH).status_code == 200
    spent = api.get("/api/v1/logs", headers=AUTH)
    assert (spent.status_code, js(spent)["errorCode"]) == (429, "E0000047")
    assert spent.headers["X-Rate-Limit-Remaining"] == "0"


def test_reset_password_needs_send_email_and_false_hands_out_a_url() -> None:
    api = client()
    uid = user(api)
    path = f"/api/v1/users/{uid}/lifecycle/reset_password"
    missing = api.post(path, headers=AUTH, json={})
    assert (missing.status_code, js(missing)["errorCode"]) == (400, "E0000001")
    handed = api.post(path + "?sendEmail=false", headers=AUTH, json={})
    assert js(handed)["resetPasswordUrl"].startswith("http")
    emails = js(api.get("/_sandbox/emails"))["emails"]
    assert emails == [{"to": None, "user": uid, "kind": "reset_password_url_returned"}]


def test_polling_always_links_next_and_a_bounded_query_ends() -> None:
    api = client()
    start = time.time() - 5
    uid = user(api)
    polled = api.get("/api/v1/logs", query_string={"since": iso(start)}, headers=AUTH)
    assert [e["eventType"] for e in js(polled)] == ["user.lifecycle.create"]
    assert 'rel="next"' in polled.headers["Link"]
    bounded = api.get(
        "/api/v1/logs",
        query_string={"since": iso(start), "until": iso(time.time() + 5)},
        headers=AUTH,
    )
    assert len(js(bounded)) == 1 and "Link" not in bounded.headers
    filtered = api.get(
        "/api/v1/logs",
        query_string={"filter": f'eventType eq "user.session.clear" and target.id eq "{uid}"'},
        headers=AUTH,
    )
    assert filtered.status_code == 200 and js(filtered) == []
    bad = api.get("/api/v1/logs", query_string={"filter": "published gt 1"}, headers=AUTH)
    assert (bad.status_code, js(bad)["errorCode"]) == (400, "E0000001")
    old = api.get(
        "/api/v1/logs", query_string={"since": iso(time.time() - 200 * 86400)}, headers=AUTH
    )
    assert (old.status_code, js(old)["errorCode"]) == (400, "E0000053")


def test_people_in_the_console_and_in_self_service_are_the_actors() -> None:
    api = client()
    uid = user(api)
    api.post("/_sandbox/console", json={"user": uid, "action": "clear_sessions"})
    api.post(f"/_sandbox/users/{uid}/self_service", json={"action": "reset_password"})
    console, own = js(api.get("/_sandbox/log"))["events"][1:]
    assert console["actor"]["alternateId"] == sim.OktaSimConfig.console_admin
    assert "Mozilla" in console["client"]["userAgent"]["rawUserAgent"]
    assert own["actor"]["id"] == uid and own["eventType"] == "user.account.reset_password"
    assert own["debugContext"]["debugData"]["is_self_initiated"] == "true"


def test_an_api_token_acts_as_its_admin_in_the_log() -> None:
    api = client()
    uid = user(api)
    assert api.delete(f"/api/v1/users/{uid}/sessions", headers=AUTH).status_code == 204
    event = js(api.get("/_sandbox/log"))["events"][-1]
    assert event["actor"]["alternateId"] == sim.OktaSimConfig.token_admin
    assert event["transaction"]["detail"]["requestApiTokenId"].startswith("00T")
