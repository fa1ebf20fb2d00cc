"""The Entra simulator answers in Microsoft's documented shapes where the Graph SDK does not look
(``test_entra_sdk.py`` reads the rest through Microsoft's own models): the token endpoint's
AADSTS refusals, Graph's error body and ids, throttling headers, the default property set."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from sandbox import entra as sim
from sandbox.entra_directory import DEFAULT_USER_PROPERTIES, PASSWORD_METHOD_ID

SIM = sim.EntraSimConfig(audit_delay_seconds=0)
TOKEN_PATH = f"/{SIM.tenant_id}/oauth2/v2.0/token"
FORM = {"grant_type": "client_credentials", "client_id": SIM.client_id,
        "client_secret": SIM.client_secret, "scope": sim.GRAPH_SCOPE}  # fmt: skip
AADSTS_KEYS = {"error", "error_description", "error_codes", "timestamp", "trace_id",
               "correlation_id"}  # fmt: skip


def client(**config: Any) -> tuple[FlaskClient, dict[str, str]]:
    app = sim.create_app(sim.EntraSimConfig(audit_delay_seconds=0, **config)).test_client()
    token = app.post(TOKEN_PATH, data=FORM).get_json()["access_token"]
    return app, {"Authorization": f"Bearer {token}"}


def test_token_refusals_are_aadsts_bodies() -> None:
    app = sim.create_app(SIM).test_client()
    cases = [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"scope": "User.Read.All"}, 400, "invalid_scope", 70011),
        ({"client_id": "00000000-0000-4000-8000-000000000000"}, 400, "unauthorized_client",
         700016),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"client_assertion": "x.y.z"}, 400, "invalid_request", 90015),  # both credentials
    ]  # fmt: skip
    for change, status, error, code in cases:
        resp = app.post(TOKEN_PATH, data={**FORM, **change})
        body = resp.get_json()
        assert (resp.status_code, body["error"], body["error_codes"]) == (status, error, [code])
        assert set(body) == AADSTS_KEYS and body["error_description"].startswith(f"AADSTS{code}")
    ok = app.post(TOKEN_PATH, data=FORM).get_json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] == 3599 and ok["access_token"]


def test_graph_errors_carry_the_code_and_the_request_ids() -> None:
    app, auth = client()
    resp = app.get("/v1.0/users/nobody@acme.test", headers={**auth, "client-request-id": "c-1"})
    assert resp.status_code == 404
    error = resp.get_json()["error"]
    assert error["code"] == "Request_ResourceNotFound"
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert error["innerError"]["client-request-id"] == "c-1" == resp.headers["client-request-id"]
    assert resp.headers["request-id"] == error["innerError"]["request-id"]
    assert app.get("/v1.0/users/x").get_json()["error"]["code"] == "InvalidAuthenticationToken"
    bad_filter = app.get("/v1.0/users", query_string={"$filter": "startswith(mail,'a')"},
                         headers=auth)  # fmt: skip
    assert bad_filter.get_json()["error"]["code"] == "Request_UnsupportedQuery"
    unfiltered = app.get("/v1.0/roleManagement/directory/roleAssignments", headers=auth)
    assert unfiltered.status_code == 400


def test_a_user_without_select_has_the_default_properties_only() -> None:
    app, auth = client()
    made = app.post("/_sandbox/users", json={"upn": "jane@acme.test"}).get_json()
    plain = app.get(f"/v1.0/users/{made['id']}", headers=auth).get_json()
    assert set(plain) - {"@odata.context"} == set(DEFAULT_USER_PROPERTIES)
    picked = app.get("/v1.0/users/jane@acme.test", headers=auth,
                     query_string={"$select": "id,accountEnabled"}).get_json()  # fmt: skip
    assert set(picked) - {"@odata.context"} == {"id", "accountEnabled"}
    unknown = app.get("/v1.0/users/jane@acme.test", headers=auth,
                      query_string={"$select": "id,password"})  # fmt: skip
    assert unknown.status_code == 400


def test_the_password_method_cannot_be_deleted_and_revoke_answers_true() -> None:
    app, auth = client()
    made = app.post("/_sandbox/users", json={"upn": "jane@acme.test"}).get_json()
    password = f"/v1.0/users/{made['id']}/authentication/passwordMethods/{PASSWORD_METHOD_ID}"
    assert app.delete(password, headers=auth).status_code == 400
    revoked = app.post(f"/v1.0/users/{made['id']}/revokeSignInSessions", headers=auth)
    assert (revoked.status_code, revoked.get_json()["value"]) == (200, True)


def test_throttling_answers_429_with_graphs_headers() -> None:
    app, auth = client(budgets={"requests": None, "writes": None, "reports": (2, 10.0)})
    path = "/v1.0/auditLogs/directoryAudits"
    first = app.get(path, headers=auth)
    assert first.status_code == 200 and first.headers["x-ms-resource-unit"] == "1"
    second = app.get(path, headers=auth)
    assert second.headers["x-ms-throttle-limit-percentage"] == "1.0"  # past 80 % of 2
    limited = app.get(path, headers=auth)
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 10
    assert limited.headers["x-ms-throttle-scope"].startswith(
        f"Tenant_Application/Read/{SIM.client_id}"
    )
    assert limited.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert limited.get_json()["error"]["code"] == "TooManyRequests"
    assert app.get("/v1.0/users", headers=auth).status_code == 200  # the reports budget only


def test_an_audit_entry_has_directoryaudits_fields_and_shows_late() -> None:
    app, auth = client()
    made = app.post("/_sandbox/users", json={"upn": "jane@acme.test"}).get_json()
    app.put("/_sandbox/audit_delay", json={"seconds": 60})
    app.post(f"/v1.0/users/{made['id']}/revokeSignInSessions", headers=auth)
    assert app.get("/v1.0/auditLogs/directoryAudits", headers=auth).get_json()["value"] == []
    [entry] = app.get("/_sandbox/audits").get_json()["audits"]
    fields = {"id", "category", "correlationId", "result", "activityDisplayName",
              "activityDateTime", "loggedByService", "initiatedBy", "targetResources"}  # fmt: skip
    assert fields <= set(entry)
    assert set(entry["initiatedBy"]["app"]) >= {"appId", "displayName", "servicePrincipalId"}
    target = entry["targetResources"][0]
    assert set(target) >= {"id", "type", "userPrincipalName", "modifiedProperties"}
    assert set(target["modifiedProperties"][0]) == {"displayName", "oldValue", "newValue"}
