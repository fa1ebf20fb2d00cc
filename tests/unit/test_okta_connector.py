"""The Okta connector against the Okta simulator (a real HTTP server), through both of Okta's
credentials: an API token and an OAuth service app with a private_key_jwt assertion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from connectors.http import AuthFailed, Fatal, RateLimited, Retriable
from connectors.identity_provider import Action
from connectors.okta import connector as okta_connector
from connectors.okta.config import OktaIdpConfig
from connectors.okta.connector import OktaConnector, rate_limit_wait
from connectors.okta.doctor import doctor
from connectors.provisioning import Status
from connectors.registry import SETTINGS, build_idp
from sandbox import okta as sim
from sandbox.common import Server, serve
from tests.conftest import settings_data

SIM = sim.OktaSimConfig()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(sim.OktaSimConfig()))
    yield running
    running.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.url, timeout=10)
    client.post("/_sandbox/reset").raise_for_status()
    client.delete("/_sandbox/calls").raise_for_status()
    yield client
    client.close()


def idp_config(server: Server, **change: Any) -> OktaIdpConfig:
    data = settings_data()
    data["idps"] = {"okta": {"kind": "okta", "base_url": server.url, **change}}
    config = SETTINGS(**data).idps["okta"]
    assert isinstance(config, OktaIdpConfig)
    return config


def oauth(server: Server, **change: Any) -> dict[str, Any]:
    return {
        "client_id": SIM.client_id,
        "private_key": sim.PRIVATE_KEY_PEM,
        "key_id": sim.KEY_ID,
        **change,
    }


@pytest.fixture(params=["token", "oauth"])
def okta(request: pytest.FixtureRequest, server: Server, api: httpx.Client) -> Iterator[Any]:
    creds = {"api_token": SIM.api_token} if request.param == "token" else oauth(server)
    connector = build_idp("okta", idp_config(server, **creds), timeout=5)
    yield connector
    connector.close()


def make_user(api: httpx.Client, login: str = "jane.doe@acme.test", **more: Any) -> str:
    resp = api.post("/_sandbox/users", json={"login": login, **more})
    resp.raise_for_status()
    return str(resp.json()["id"])


def events(api: httpx.Client) -> list[dict[str, Any]]:
    return list(api.get("/_sandbox/log").json()["events"])


def test_find_user_by_email_then_by_id_reads_status_and_contacts(
    okta: OktaConnector, api: httpx.Client
) -> None:
    uid = make_user(api, mobilePhone="+15550100")
    user = okta.find_user("email", "JANE.DOE@acme.test")
    assert user is not None and user.id == uid
    assert (user.login, user.email, user.phone) == (
        "jane.doe@acme.test",
        "jane.doe@acme.test",
        "+15550100",
    )
    assert (user.status, user.active, user.privileged, user.locked) == (
        "ACTIVE",
        True,
        False,
        False,
    )
    assert okta.find_user("id", uid) == user
    assert okta.find_user("login", "jane.doe@acme.test") == user
    assert okta.find_user("email", "nobody@acme.test") is None
    assert okta.find_user("id", "00unknown") is None
    # The search, then the re-read by id (searches are eventually consistent).
    calls = api.get("/_sandbox/calls").json()["calls"]
    routes = [c["route"] for c in calls if c["route"].startswith("/api/")]
    assert routes[:2] == ["/api/v1/users", "/api/v1/users/<path:id_or_login>"]


def test_a_search_value_cannot_change_the_search(okta: OktaConnector, api: httpx.Client) -> None:
    make_user(api)
    with pytest.raises(Fatal, match="unexpected characters"):
        okta.find_user("email", 'x" or profile.email sw "j')


def test_two_matches_are_ambiguous_even_across_pages(server: Server, api: httpx.Client) -> None:
    make_user(api, "a@acme.test", email="shared@acme.test")
    make_user(api, "b@acme.test", email="shared@acme.test")
    okta = OktaConnector("okta", idp_config(server, api_token=SIM.api_token), 5)
    with pytest.raises(Fatal, match="ambiguous"):
        okta.find_user("email", "shared@acme.test")
    okta.close()


def test_search_follows_okta_next_links(server: Server, api: httpx.Client) -> None:
    for n in range(3):
        make_user(api, f"u{n}@acme.test", email="x@acme.test")
    first = api.get(
        "/api/v1/users",
        params={"search": 'profile.email eq "x@acme.test"', "limit": 1},
        headers={"Authorization": f"SSWS {SIM.api_token}"},
    )
    assert len(first.json()) == 1 and "next" in first.links
    second = api.get(first.links["next"]["url"], headers={"Authorization": f"SSWS {SIM.api_token}"})
    assert second.json()[0]["id"] > first.json()[0]["id"]


def test_deactivated_and_suspended_users_are_not_active(
    okta: OktaConnector, api: httpx.Client
) -> None:
    for status in ("DEPROVISIONED", "SUSPENDED"):
        make_user(api, f"{status.lower()}@acme.test", status=status)
        user = okta.find_user("email", f"{status.lower()}@acme.test")
        assert user is not None and (user.status, user.active) == (status, False)


def test_privileged_by_role_and_by_configured_group(server: Server, api: httpx.Client) -> None:
    make_user(api, "admin@acme.test", roles=["SUPER_ADMIN"])
    make_user(api, "ops@acme.test", groups=["Break Glass"])
    make_user(api, "plain@acme.test", groups=["Sales"])
    config = idp_config(server, api_token=SIM.api_token, privileged_groups=["Break Glass"])
    okta = OktaConnector("okta", config, 5)
    admin = okta.find_user("email", "admin@acme.test")
    ops = okta.find_user("email", "ops@acme.test")
    plain = okta.find_user("email", "plain@acme.test")
    okta.close()
    assert admin is not None and admin.privileged and admin.privileged_because == ("SUPER_ADMIN",)
    assert ops is not None and ops.privileged and ops.privileged_because == ("Break Glass",)
    assert plain is not None and not plain.privileged


def test_each_action_is_done_once_and_logged_with_deskgates_app_as_actor(
    server: Server, api: httpx.Client
) -> None:
    uid = make_user(api, factors=["push", "sms"])
    api.post(f"/_sandbox/users/{uid}/lock").raise_for_status()
    okta = OktaConnector("okta", idp_config(server, **oauth(server)), 5)
    user = okta.find_user("id", uid)
    assert user is not None and user.locked
    order: tuple[Action, ...] = ("unlock", "reset_mfa", "revoke_sessions", "reset_password")
    assert set(order) == okta.actions
    done = {action: okta.perform(user, action) for action in order}
    okta.close()
    assert all(d.request_id and d.expect for d in done.values())
    assert "e-mailed" in done["reset_password"].expect
    # Okta e-mailed the reset link; no reset URL was ever handed to Deskgate.
    assert api.get("/_sandbox/emails").json()["emails"] == [
        {"to": "jane.doe@acme.test", "user": uid, "kind": "reset_password"}
    ]
    ours = [e for e in events(api) if e["actor"]["id"] == SIM.client_id]
    assert {e["eventType"] for e in ours} == {
        "user.account.unlock_by_admin",
        "user.mfa.factor.reset_all",
        "user.account.reset_password",
        "user.session.clear",
    }
    assert all(e["actor"]["type"] == "PublicClientApp" for e in ours)
    assert all("deskgate" in e["client"]["userAgent"]["rawUserAgent"] for e in ours)
    by_request = {e["debugContext"]["debugData"]["requestId"]: e["eventType"] for e in ours}
    assert by_request[done["unlock"].request_id] == "user.account.unlock_by_admin"
    assert by_request[done["reset_mfa"].request_id] == "user.mfa.factor.reset_all"
    # Every lifecycle POST carried Content-Length: 0, so none met Okta's 411.
    statuses = {c["status"] for c in api.get("/_sandbox/calls").json()["calls"]}
    assert 411 not in statuses


def test_a_post_without_content_length_is_411(server: Server, api: httpx.Client) -> None:
    uid = make_user(api)

    def chunks() -> Iterator[bytes]:
        yield from ()

    # No body and no Content-Length at all (what a bare POST from some clients sends).
    with httpx.Client(base_url=server.url) as raw:
        req = raw.build_request(
            "POST",
            f"/api/v1/users/{uid}/lifecycle/unlock",
            headers={"Authorization": f"SSWS {SIM.api_token}"},
        )
        del req.headers["Content-Length"]
        assert raw.send(req).status_code == 411


def test_refusals_are_typed_by_error_code(okta: OktaConnector, api: httpx.Client) -> None:
    uid = make_user(api, factors=[])
    ad = make_user(api, "ad@acme.test", provider="ACTIVE_DIRECTORY", status="LOCKED_OUT")
    user = okta.find_user("id", uid)
    ad_user = okta.find_user("id", ad)
    assert user is not None and ad_user is not None
    with pytest.raises(Fatal, match="E0000038") as not_locked:
        okta.perform(user, "unlock")  # not locked out
    assert not isinstance(not_locked.value, AuthFailed)  # a 403 that is no permission problem
    with pytest.raises(Fatal, match="E0000032"):
        okta.perform(ad_user, "unlock")  # the lockout lives in Active Directory
    api.put("/_sandbox/settings", json={"rate_limits": {"user_write": 0}})
    with pytest.raises(RateLimited):
        okta.perform(user, "reset_mfa")  # a refusal that is not "nothing to reset" still raises


def test_reset_mfa_retried_after_its_sessions_call_failed_ends_the_sessions(
    okta: OktaConnector, api: httpx.Client
) -> None:
    uid = make_user(api, factors=["push"])
    user = okta.find_user("id", uid)
    assert user is not None
    fault = {"path_prefix": f"/api/v1/users/{uid}/sessions", "status": 503, "method": "DELETE"}
    api.post("/_sandbox/faults", json=fault).raise_for_status()
    with pytest.raises(Retriable):
        okta.perform(user, "reset_mfa")  # factors reset; the sessions call failed
    done = okta.perform(user, "reset_mfa")  # the retry: nothing left to reset, sessions end
    kinds = [e["eventType"] for e in events(api)]
    assert kinds.count("user.mfa.factor.reset_all") == 1 and kinds.count("user.session.clear") == 1
    assert done.request_id and "factors were removed" in done.expect


def test_a_missing_scope_is_auth_failed_naming_it(server: Server, api: httpx.Client) -> None:
    app = sim.create_app(sim.OktaSimConfig(granted_scopes=frozenset({"okta.users.read"})))
    narrow = serve(app)
    try:
        config = idp_config(narrow, **oauth(narrow), manage=False)
        okta = OktaConnector("okta", config, 5)
        with pytest.raises(AuthFailed, match="not granted"):
            okta.find_user("email", "jane.doe@acme.test")
        checks = doctor("okta", config)
        assert [(c.name, c.status) for c in checks] == [("oauth token", Status.FAIL)]
        assert "okta.roles.read" in checks[0].detail and "Okta API Scopes" in checks[0].fix
        okta.close()
    finally:
        narrow.stop()


def test_a_token_without_a_scope_meets_okta_403_challenge(
    server: Server, api: httpx.Client
) -> None:
    uid = make_user(api)
    form = {
        "grant_type": "client_credentials",
        "scope": "okta.users.read",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    from connectors.okta.auth import client_assertion

    config = idp_config(server, **oauth(server))
    token = api.post(
        "/oauth2/v1/token", data={**form, "client_assertion": client_assertion(config)}
    )
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    resp = api.get(f"/api/v1/users/{uid}/roles", headers=bearer)
    assert resp.status_code == 403 and resp.content == b""
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    assert 'scope="okta.roles.read"' in resp.headers["WWW-Authenticate"]


def test_an_assertion_is_used_once(server: Server, api: httpx.Client) -> None:
    from connectors.okta.auth import client_assertion

    assertion = client_assertion(idp_config(server, **oauth(server)))
    form = {
        "grant_type": "client_credentials",
        "scope": "okta.users.read",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    assert api.post("/oauth2/v1/token", data=form).status_code == 200
    again = api.post("/oauth2/v1/token", data=form)
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    assert "already been used" in again.json()["error_description"]


def test_an_app_that_requires_dpop_is_named_by_doctor(api: httpx.Client) -> None:
    dpop = serve(sim.create_app(sim.OktaSimConfig(require_dpop=True)))
    try:
        checks = doctor("okta", idp_config(dpop, **oauth(dpop)))
    finally:
        dpop.stop()
    assert [(c.name, c.status) for c in checks] == [("oauth token", Status.FAIL)]
    assert "invalid_dpop_proof" in checks[0].detail and "turn off" in checks[0].fix


def test_read_log_follows_full_pages_within_one_read(
    server: Server, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(okta_connector, "LOG_LIMIT", 2)
    okta = OktaConnector("okta", idp_config(server, api_token=SIM.api_token), 5)
    _, cursor = okta.read_log(None)
    uids = [make_user(api, f"p{n}@acme.test") for n in range(5)]
    got, cursor = okta.read_log(cursor)
    again, _ = okta.read_log(cursor)
    okta.close()
    assert [e.target_id for e in got] == uids and again == []


def test_an_assertion_signed_by_another_key_is_refused(server: Server, api: httpx.Client) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    okta = OktaConnector("okta", idp_config(server, **oauth(server, private_key=pem)), 5)
    with pytest.raises(AuthFailed, match="invalid_client"):
        okta.find_user("id", "00u1")
    okta.close()


def test_429_waits_until_the_bucket_resets_by_okta_clock(server: Server, api: httpx.Client) -> None:
    uid = make_user(api)
    api.put("/_sandbox/settings", json={"rate_limits": {"user": 1}}).raise_for_status()
    okta = OktaConnector("okta", idp_config(server, api_token=SIM.api_token), 5)
    try:
        okta.find_user("id", uid)
        with pytest.raises(RateLimited) as limited:
            okta.find_user("id", uid)
    finally:
        okta.close()
    assert 1 <= limited.value.retry_after <= 61
    # The wait is Okta's Reset minus Okta's Date, whatever this host's clock says.
    answer = httpx.Response(
        429, headers={"X-Rate-Limit-Reset": "1000030", "Date": "Mon, 12 Jan 1970 13:46:40 GMT"}
    )
    assert rate_limit_wait(answer) == 30


def test_changed_at_reads_the_profile_updates_in_the_system_log(
    okta: OktaConnector, api: httpx.Client
) -> None:
    now = time.time()
    uid = make_user(api, mobilePhone="+15550100", created=now - 40 * 86400)
    api.patch(f"/_sandbox/users/{uid}", json={"title": "Engineer", "at": now - 20 * 86400})
    api.patch(f"/_sandbox/users/{uid}", json={"mobilePhone": "+15550199", "at": now - 10 * 86400})
    user = okta.find_user("id", uid)
    assert user is not None
    assert okta.changed_at(user, "phone") == pytest.approx(now - 10 * 86400, abs=1)
    # E-mail never changed: the creation, still inside the log's 90 days, dates it.
    assert okta.changed_at(user, "email") == pytest.approx(now - 40 * 86400, abs=1)


def test_changed_at_is_none_beyond_the_log_retention(
    okta: OktaConnector, api: httpx.Client
) -> None:
    uid = make_user(api, created=time.time() - 200 * 86400)
    user = okta.find_user("id", uid)
    assert user is not None and okta.changed_at(user, "email") is None


def test_a_change_the_log_does_not_show_yet_counts_from_last_updated(
    okta: OktaConnector, api: httpx.Client
) -> None:
    uid = make_user(api, created=time.time() - 40 * 86400)
    api.put("/_sandbox/settings", json={"log_delay_seconds": 600})
    api.patch(f"/_sandbox/users/{uid}", json={"email": "attacker@evil.test"})
    user = okta.find_user("id", uid)
    assert user is not None
    # The log still shows only the creation, but the record changed since: not 40 days old.
    assert okta.changed_at(user, "email") == pytest.approx(time.time(), abs=5)


def test_read_log_resumes_without_gap_or_double_and_classifies(
    server: Server, api: httpx.Client
) -> None:
    okta = OktaConnector("okta", idp_config(server, **oauth(server)), 5)
    make_user(api, "earlier@acme.test")
    time.sleep(0.01)
    seen, cursor = okta.read_log(None)  # from now: the earlier creation is not news
    assert seen == []
    api.put("/_sandbox/settings", json={"log_delay_seconds": 0.5}).raise_for_status()
    uid = make_user(api, factors=["push"])
    user = okta.find_user("id", uid)
    assert user is not None
    okta.perform(user, "revoke_sessions")
    api.post("/_sandbox/console", json={"user": uid, "action": "reset_factors"})
    api.post(f"/_sandbox/users/{uid}/self_service", json={"action": "reset_password"})
    api.patch(f"/_sandbox/users/{uid}", json={"mobilePhone": "+15550123"})
    early, cursor = okta.read_log(cursor)  # nothing persisted yet: Okta's log is late
    assert early == []
    time.sleep(0.7)
    first, cursor = okta.read_log(cursor)
    # A restart: a new connector with the stored cursor.
    okta.close()
    okta = OktaConnector("okta", idp_config(server, **oauth(server)), 5)
    api.post("/_sandbox/console", json={"user": uid, "action": "unlock"})
    time.sleep(0.7)
    second, cursor = okta.read_log(cursor)
    okta.close()
    assert [e.kind for e in first] == [
        "other",  # the creation
        "revoke_sessions", "reset_mfa", "reset_password", "contact_changed",
    ]  # fmt: skip
    assert [e.kind for e in second] == ["unlock"]
    ids = [e.id for e in first + second]
    assert len(ids) == len(set(ids))
    _, ours, admin, own, changed = first
    assert ours.actor_is_app and ours.actor_id == SIM.client_id == okta.own_actor_id
    assert not admin.actor_is_app and not admin.self_service and admin.target_id == uid
    assert own.self_service and not own.actor_is_app
    assert changed.changed == ("phone",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, "exactly one credential"),
        ({"api_token": "t", "client_id": "0oa1", "private_key": "k"}, "exactly one credential"),
        ({"client_id": "0oa1"}, "together"),
        ({"client_id": "0oa1", "private_key": "not a key"}, "not an unencrypted PEM"),
        ({"api_token": ""}, "must not be empty"),
        ({"api_token": "t", "base_url": "http://acme.okta.com"}, "must be https"),
        ({"api_token": "t", "base_url": "https://acme.okta.com/api/v1"}, "org URL alone"),
    ],
)
def test_bad_config_names_the_field(change: dict[str, Any], message: str) -> None:
    data = settings_data()
    data["idps"] = {"okta": {"kind": "okta", "base_url": "https://acme.okta.com", **change}}
    with pytest.raises(ValidationError, match=message):
        SETTINGS(**data)


def test_doctor_proves_each_read_and_the_granted_scopes(server: Server, api: httpx.Client) -> None:
    make_user(api)
    for creds in ({"api_token": SIM.api_token}, oauth(server)):
        checks = doctor("okta", idp_config(server, **creds))
        assert all(c.status == Status.OK for c in checks), checks
        assert {"read users", "read admin roles", "read the System Log"} <= {c.name for c in checks}
    assert "okta.users.manage" in checks[0].detail
    calls = api.get("/_sandbox/calls").json()["calls"]
    assert {c["method"] for c in calls} <= {"GET", "POST"}  # POST: the token only
    assert all(c["path"] == "/oauth2/v1/token" for c in calls if c["method"] == "POST")


def test_a_next_link_on_another_host_is_not_followed(server: Server) -> None:
    okta = OktaConnector("okta", idp_config(server, api_token=SIM.api_token), 5)
    elsewhere = '<https://okta.evil.test/api/v1/logs?after=x>; rel="next"'
    try:
        with pytest.raises(Fatal, match="away from the Okta org"):
            okta._next(httpx.Response(200, headers={"Link": elsewhere}))
        with pytest.raises(Fatal, match="not an Okta System Log cursor"):
            okta.read_log("https://okta.evil.test/api/v1/logs?after=x")
    finally:
        okta.close()
