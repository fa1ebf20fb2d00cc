"""The Entra ID connector against the Entra simulator (a real HTTP server): finding people,
telling admins apart, dating contact changes, each action, and reading the audit log."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.entra import connector as entra_connector
from connectors.entra.config import EntraIdpConfig
from connectors.entra.connector import EntraConnector
from connectors.entra.doctor import doctor
from connectors.http import AuthFailed, Fatal, RateLimited
from connectors.identity_provider import IdpEvent, IdpUser
from connectors.provisioning import Status
from connectors.registry import SETTINGS, build_idp
from sandbox import entra as sim
from sandbox.common import Server, serve
from tests.conftest import settings_data

SIM = sim.EntraSimConfig()
ADMIN_UPN = "it.admin@acme.test"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(sim.EntraSimConfig(audit_delay_seconds=0, page_size=2)))
    yield running
    running.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.url, timeout=10)
    client.post("/_sandbox/reset").raise_for_status()
    client.put("/_sandbox/audit_delay", json={"seconds": 0}).raise_for_status()
    client.put(f"/_sandbox/apps/{SIM.client_id}", json={"permissions": sorted(SIM.permissions)})
    for bucket in ("requests", "writes", "reports"):
        client.put("/_sandbox/throttle", json={"bucket": bucket, "requests": None})
    yield client
    client.close()


def idp_config(server: Server, **change: Any) -> EntraIdpConfig:
    block = {
        "kind": "entra",
        "tenant_id": SIM.tenant_id,
        "client_id": SIM.client_id,
        "client_secret": SIM.client_secret,
        "graph_url": server.url,
        "login_url": server.url,
        **change,
    }
    config = SETTINGS(**settings_data(idps={"acme_entra": block})).idps["acme_entra"]
    assert isinstance(config, EntraIdpConfig)
    return config


@pytest.fixture
def idp(server: Server, api: httpx.Client) -> Iterator[EntraConnector]:
    built = build_idp("acme_entra", idp_config(server, privileged_groups=["IT Admins"]), 5)
    assert isinstance(built, EntraConnector)
    yield built
    built.close()


def person(api: httpx.Client, upn: str = "jane.doe@acme.test", **body: Any) -> dict[str, Any]:
    resp = api.post("/_sandbox/users", json={"upn": upn, "mobilePhone": "+1 2065550100", **body})
    resp.raise_for_status()
    created: dict[str, Any] = resp.json()
    return created


def found(idp: EntraConnector, upn: str = "jane.doe@acme.test") -> IdpUser:
    user = idp.find_user("login", upn)
    assert user is not None
    return user


def audits(api: httpx.Client) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api.get("/_sandbox/audits").json()["audits"]
    return rows


THREE_METHODS = [
    {"type": "microsoftAuthenticator", "displayName": "iPhone", "default": True},
    {"type": "phone", "phoneNumber": "+1 2065550100"},
    {"type": "fido2", "displayName": "YubiKey"},
]


# -- finding people ---------------------------------------------------------------------------


def test_a_user_is_found_by_mail_or_login_and_read_again_by_id(
    idp: EntraConnector, api: httpx.Client
) -> None:
    made = person(api, mail="Jane.Doe@acme.test")
    by_mail = idp.find_user("email", "jane.doe@ACME.test")  # Entra compares case-insensitively
    assert by_mail == IdpUser(
        id=made["id"], login="jane.doe@acme.test", email="Jane.Doe@acme.test",
        phone="+1 2065550100", status="enabled", active=True, privileged=False,
    )  # fmt: skip
    assert idp.find_user("login", "jane.doe@acme.test") == by_mail
    assert idp.find_user("id", made["id"]) == by_mail
    assert idp.find_user("email", "nobody@acme.test") is None
    assert idp.find_user("id", str(uuid.uuid4())) is None
    assert idp.find_user("id", "../users?$top=1") is None  # never bends the path
    calls = api.get("/_sandbox/calls").json()["calls"]
    assert idp.find_user("id", "jane.doe@acme.test") is None  # an address never goes in a path
    assert len(api.get("/_sandbox/calls").json()["calls"]) == len(calls)
    assert idp.find_user("email", "o'brien@acme.test") is None  # a quote stays a literal


def test_a_mail_two_users_share_is_never_guessed(idp: EntraConnector, api: httpx.Client) -> None:
    person(api, "jane.doe@acme.test", mail="shared@acme.test")
    person(api, "jane.doe2@acme.test", mail="shared@acme.test")
    with pytest.raises(Fatal, match="more than one user"):
        idp.find_user("email", "shared@acme.test")


def test_a_disabled_account_is_found_but_not_active(idp: EntraConnector, api: httpx.Client) -> None:
    person(api, enabled=False)
    user = found(idp)
    assert (user.status, user.active) == ("disabled", False)


def test_privileged_by_any_directory_role_or_a_configured_group(
    idp: EntraConnector, api: httpx.Client
) -> None:
    person(api, "helpdesk@acme.test", roles=["Helpdesk Administrator"])
    # page_size 2: the configured group is on memberOf's second page.
    person(api, "grouped@acme.test", groups=["Sales", "Everyone", "IT Admins"])
    person(api, "plain@acme.test", groups=["Sales", "Everyone", "Finance"])
    by_role = found(idp, "helpdesk@acme.test")
    assert by_role.privileged and by_role.privileged_because == ("Helpdesk Administrator",)
    by_group = found(idp, "grouped@acme.test")
    assert by_group.privileged and by_group.privileged_because == ("IT Admins",)
    assert not found(idp, "plain@acme.test").privileged


# -- acting -----------------------------------------------------------------------------------


def test_reset_mfa_deletes_every_method_the_default_last_as_deskgates_app(
    idp: EntraConnector, api: httpx.Client
) -> None:
    """The default (listed first) is refused while others exist; it goes last."""
    made = person(api, methods=THREE_METHODS)
    done = idp.perform(found(idp), "reset_mfa")
    assert done.action == "reset_mfa" and uuid.UUID(str(done.request_id))
    assert "3 sign-in method(s)" in done.expect
    left = api.get(f"/_sandbox/users/{made['id']}").json()["methods"]
    assert [m["@odata.type"] for m in left] == ["#microsoft.graph.passwordAuthenticationMethod"]
    deleted = [a for a in audits(api) if a["activityDisplayName"] == "Admin deleted security info"]
    assert [a["resultReason"] for a in deleted] == [
        "Admin deleted phone method for user",
        "Admin deleted FIDO2 security key method for user",
        "Admin deleted Microsoft Authenticator method for user",
    ]
    for entry in deleted:
        assert entry["initiatedBy"]["app"]["appId"] == SIM.client_id
        assert entry["initiatedBy"]["user"] is None
        assert entry["targetResources"][0]["id"] == made["id"]


def test_reset_mfa_removes_only_the_configured_types(server: Server, api: httpx.Client) -> None:
    made = person(api, methods=THREE_METHODS)
    idp = EntraConnector("e", idp_config(server, mfa_methods=["phone", "fido2"]), 5)
    idp.perform(found(idp), "reset_mfa")
    left = api.get(f"/_sandbox/users/{made['id']}").json()["methods"]
    assert {m["@odata.type"].split(".")[-1] for m in left} == {
        "passwordAuthenticationMethod", "microsoftAuthenticatorAuthenticationMethod",
    }  # fmt: skip
    with pytest.raises(Fatal, match="none of the configured"):
        idp.perform(found(idp), "reset_mfa")
    idp.close()


def test_revoke_sessions_is_logged_as_deskgates_app(idp: EntraConnector, api: httpx.Client) -> None:
    made = person(api)
    done = idp.perform(found(idp), "revoke_sessions")
    assert done.action == "revoke_sessions" and done.request_id
    [entry] = audits(api)
    assert entry["activityDisplayName"] == "Update StsRefreshTokenValidFrom Timestamp"
    assert entry["initiatedBy"]["app"]["appId"] == SIM.client_id
    assert entry["targetResources"][0]["id"] == made["id"]


def test_unlock_and_password_reset_are_not_offered(idp: EntraConnector, api: httpx.Client) -> None:
    person(api)
    assert idp.actions == {"reset_mfa", "revoke_sessions"}
    for action in ("unlock", "reset_password"):
        with pytest.raises(Fatal, match="not supported"):
            idp.perform(found(idp), action)
    assert audits(api) == []


# -- errors -------------------------------------------------------------------------------------


def test_a_throttled_call_is_rate_limited_with_graphs_wait(
    idp: EntraConnector, api: httpx.Client
) -> None:
    person(api)
    api.put("/_sandbox/throttle", json={"bucket": "requests", "requests": 1, "per_seconds": 30})
    with pytest.raises(RateLimited) as caught:
        idp.find_user("login", "jane.doe@acme.test")  # the search passes, the read by id waits
    assert 25 <= caught.value.retry_after <= 30


def test_a_missing_permission_or_a_restricted_user_is_auth_failed(
    server: Server, api: httpx.Client
) -> None:
    person(api, "restricted@acme.test", management_restricted=True, methods=THREE_METHODS)
    idp = EntraConnector("e", idp_config(server), 5)
    with pytest.raises(AuthFailed, match="Authorization_RequestDenied"):
        idp.perform(found(idp, "restricted@acme.test"), "revoke_sessions")
    idp.close()
    api.put(f"/_sandbox/apps/{SIM.client_id}", json={"permissions": ["User.Read.All"]})
    idp = EntraConnector("e", idp_config(server), 5)  # a new token carries the new roles
    with pytest.raises(AuthFailed, match="Authorization_RequestDenied"):
        found(idp, "restricted@acme.test")  # role assignments need RoleManagement.Read.*
    idp.close()


def test_a_token_graph_rejects_is_fetched_again_once(
    idp: EntraConnector, api: httpx.Client
) -> None:
    person(api)
    found(idp)  # a token is cached
    api.post("/_sandbox/faults", json={"path_prefix": "/v1.0/users", "status": 401})
    api.delete("/_sandbox/calls")
    assert found(idp).login == "jane.doe@acme.test"
    counts = api.get("/_sandbox/calls").json()["counts"]
    assert counts["POST /<tenant>/oauth2/v2.0/token"] == 1
    assert counts["GET /v1.0/users"] == 2  # refused once, sent again with the new token


def test_a_refused_credential_names_the_aadsts_code(server: Server, api: httpx.Client) -> None:
    idp = EntraConnector("e", idp_config(server, client_secret="not-the-secret-at-all"), 5)
    with pytest.raises(AuthFailed, match="invalid_client \\(AADSTS7000215\\)"):
        idp.find_user("login", "jane.doe@acme.test")
    idp.close()


def _certificate() -> tuple[str, str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode(), uuid.uuid4().hex[:40].ljust(40, "0")


def test_a_certificate_credential_signs_its_assertion(server: Server, api: httpx.Client) -> None:
    person(api)
    private, public, thumbprint = _certificate()
    api.put(f"/_sandbox/apps/{SIM.client_id}", json={"certificates": {thumbprint: public}})
    cert = {"client_secret": None, "certificate_key": private,
            "certificate_thumbprint": thumbprint.upper()}  # fmt: skip
    idp = EntraConnector("e", idp_config(server, **cert), 5)
    assert found(idp).login == "jane.doe@acme.test"
    idp.close()
    other, _, _ = _certificate()  # the right thumbprint, another key: a forged assertion
    idp = EntraConnector("e", idp_config(server, **{**cert, "certificate_key": other}), 5)
    with pytest.raises(AuthFailed, match="AADSTS700027"):
        found(idp)
    idp.close()


def test_the_config_wants_exactly_one_credential_and_https() -> None:
    base = {"kind": "entra", "tenant_id": SIM.tenant_id, "client_id": SIM.client_id}
    private, _, thumbprint = _certificate()
    cases = {
        "exactly one credential": {},
        "set together": {"certificate_key": private},
        "https": {"client_secret": "s" * 20, "graph_url": "http://graph.example.com"},
        "PEM private key": {"certificate_key": "nope", "certificate_thumbprint": thumbprint},
        "is empty": {"client_secret": " "},
    }
    for message, extra in cases.items():
        with pytest.raises(Exception, match=message):
            SETTINGS(**settings_data(idps={"e": {**base, **extra}}))
    both = {"client_secret": "s" * 20, "certificate_key": private,
            "certificate_thumbprint": thumbprint}  # fmt: skip
    with pytest.raises(Exception, match="exactly one credential"):
        SETTINGS(**settings_data(idps={"e": {**base, **both}}))


# -- when a contact changed ---------------------------------------------------------------------


def test_changed_at_reads_update_user_entries_else_the_creation(
    idp: EntraConnector, api: httpx.Client
) -> None:
    made = person(api, created_days_ago=10)
    person(api, ADMIN_UPN, roles=["User Administrator"])
    before = time.time()
    api.patch(f"/_sandbox/users/{made['id']}", json={"mobilePhone": "+1 2065550199",
                                                     "admin": ADMIN_UPN})  # fmt: skip
    user = found(idp)
    phone_at = idp.changed_at(user, "phone")
    assert phone_at is not None and before - 1 <= phone_at <= time.time()
    email_at = idp.changed_at(user, "email")  # never changed: dated from the creation
    assert email_at is not None and abs(email_at - (before - 10 * 86400)) < 60


def test_changed_at_cannot_tell_past_the_retention_or_while_the_log_lags(
    idp: EntraConnector, api: httpx.Client
) -> None:
    old = person(api, "old@acme.test", created_days_ago=45)
    assert idp.changed_at(found(idp, "old@acme.test"), "phone") is None  # beyond 30 days
    api.patch(f"/_sandbox/users/{old['id']}", json={"mobilePhone": "+1 2065550111"})
    assert idp.changed_at(found(idp, "old@acme.test"), "phone") is not None
    api.put("/_sandbox/audit_delay", json={"seconds": 600})
    api.patch(f"/_sandbox/users/{old['id']}", json={"mobilePhone": "+1 2065550122"})
    # The newest logged change is not the value the user has now: a later one is on its way.
    assert idp.changed_at(found(idp, "old@acme.test"), "phone") is None


# -- the audit log ------------------------------------------------------------------------------


def test_read_log_resumes_from_its_cursor_without_a_gap_or_a_double(
    server: Server, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries show up late; overlapping windows catch them, deduplicated by id."""
    monkeypatch.setattr(entra_connector, "AUDIT_PAGE", 2)  # page through @odata.nextLink
    idp = EntraConnector("e", idp_config(server, log_overlap_seconds=30), 5)
    made = person(api, methods=THREE_METHODS)
    admin = person(api, ADMIN_UPN, roles=["Authentication Administrator"])
    seen: dict[str, IdpEvent] = {}

    def read(cursor: str | None) -> str:
        events, cursor = idp.read_log(cursor)
        assert [e.at for e in events] == sorted(e.at for e in events)  # oldest first
        seen.update((e.id, e) for e in events)
        return cursor

    cursor = read(None)
    assert seen == {}
    phone = next(m["id"] for m in made["methods"] if "phone" in m["@odata.type"])
    api.post("/_sandbox/portal", json={"admin": ADMIN_UPN, "user": made["id"],
                                       "action": "delete_method", "method": phone})  # fmt: skip
    api.post("/_sandbox/portal", json={"admin": ADMIN_UPN, "user": made["id"],
                                       "action": "create_tap"})  # fmt: skip
    api.post("/_sandbox/self_service", json={"user": made["id"], "action": "reset_password"})
    cursor = read(cursor)
    api.put("/_sandbox/audit_delay", json={"seconds": 5})  # ample, however loaded the machine
    idp.perform(found(idp), "revoke_sessions")  # logged now, visible in 5 s
    api.patch(f"/_sandbox/users/{made['id']}", json={"mail": "jd@acme.test", "admin": ADMIN_UPN})
    cursor = read(cursor)
    assert len(seen) == 3
    time.sleep(5.2)
    read(read(cursor))  # twice: the overlap brings entries again, the ids keep them once
    assert sorted(seen) == sorted(a["id"] for a in audits(api))
    by_type = {e.raw_type: e for e in seen.values()}
    deleted = by_type["Admin deleted security info"]
    assert (deleted.kind, deleted.actor_id, deleted.actor_is_app, deleted.self_service) == (
        "reset_mfa", admin["id"], False, False,
    )  # fmt: skip
    assert by_type["Admin registered security info"].kind == "temporary_access"
    reset = by_type["Reset password (self-service)"]
    assert (reset.kind, reset.self_service, reset.actor_id) == ("reset_password", True, made["id"])
    revoked = by_type["Update StsRefreshTokenValidFrom Timestamp"]
    assert (revoked.kind, revoked.actor_id, revoked.actor_is_app) == (
        "revoke_sessions", SIM.client_id, True,
    )  # fmt: skip
    changed = by_type["Update user"]
    assert (changed.kind, changed.changed, changed.target_id) == (
        "contact_changed", ("email",), made["id"],
    )  # fmt: skip
    idp.close()


def test_read_log_without_overlap_misses_a_late_entry(server: Server, api: httpx.Client) -> None:
    """Why the overlap exists: a window ending at the last read never sees a late entry."""
    idp = EntraConnector("e", idp_config(server, log_overlap_seconds=1), 5)
    person(api)
    api.put("/_sandbox/audit_delay", json={"seconds": 4})
    _, cursor = idp.read_log(None)
    idp.perform(found(idp), "revoke_sessions")
    time.sleep(2.5)  # the next window starts past the entry's time, before it shows
    events, cursor = idp.read_log(cursor)
    assert events == []
    time.sleep(2)
    events, _ = idp.read_log(cursor)
    assert events == []  # the entry is logged at the revoke, before this window
    assert len(audits(api)) == 1
    idp.close()


# -- doctor -----------------------------------------------------------------------------------


def test_doctor_proves_each_permission_from_the_token_and_reads(
    server: Server, api: httpx.Client
) -> None:
    checks = doctor("acme_entra", idp_config(server))
    assert [c.status for c in checks] == [Status.OK] * 6, checks
    reads_only = ["User.Read.All", "UserAuthenticationMethod.Read.All"]
    api.put(f"/_sandbox/apps/{SIM.client_id}", json={"permissions": reads_only})
    checks = doctor("acme_entra", idp_config(server))
    failed = {c.name.split(" ")[0] for c in checks if c.status is Status.FAIL}
    assert failed == {
        "RoleManagement.Read.Directory", "UserAuthenticationMethod.ReadWrite.All",
        "User.RevokeSessions.All", "AuditLog.Read.All",
    }  # fmt: skip
    assert all("admin consent" in c.fix for c in checks if c.status is Status.FAIL)
    bad = doctor("acme_entra", idp_config(server, client_secret="not-the-secret-at-all"))
    assert [(c.name, c.status) for c in bad] == [("token", Status.FAIL)]
