"""``deskgate setup`` and ``deskgate doctor`` for ServiceNow, against the simulator over HTTP:
the update set file, the Table API path, their agreement, idempotence, and what doctor names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
from pydantic import SecretStr

from connectors.provisioning import (
    Action,
    AdminCredential,
    Check,
    DoctorRequest,
    ProvisioningError,
    SetupRequest,
)
from connectors.servicenow import KIND
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.doctor import doctor
from connectors.servicenow.records import (
    DESKGATE_ROLE,
    RULE_NAME,
    UI_ACTION_NAME,
    Wanted,
    secret_property,
    url_property,
    wanted,
)
from connectors.servicenow.setup import setup
from connectors.servicenow.update_set import parse, render
from sandbox.common import Server, serve
from sandbox.servicenow import ServiceNowSimConfig, create_app
from tests.conftest import settings_data
from worker.commands import cli

SIM = ServiceNowSimConfig()
PUBLIC = "https://deskgate.acme.test"
SECRET = "a-push-secret-of-some-length"
ADMIN = AdminCredential(SIM.admin_username, SecretStr(SIM.admin_password))
TABLES = ("sys_dictionary", "sys_choice", "sys_properties", "sys_script", "sys_ui_action",
          "sys_user_role", "sys_security_acl", "sys_security_acl_role")  # fmt: skip
UNLOADED = "2026-01-02 03:04:05"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = serve(create_app(SIM))
    yield srv
    srv.stop()


@pytest.fixture
def sim(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=(SIM.admin_username, SIM.admin_password)) as c:
        c.post("/_sandbox/reset").raise_for_status()
        before_setup(c)
        yield c


def before_setup(sim: httpx.Client) -> None:
    """An instance as setup first finds it: stock roles and users, but none of Deskgate's own
    role, its grants or field ACLs (a simulator may start with them, as if set up already)."""
    for table, query in (
        ("sys_security_acl_role", ""),
        ("sys_security_acl", ""),
        ("sys_user_has_role", f"role.name={DESKGATE_ROLE}"),
        ("sys_user_role", f"name={DESKGATE_ROLE}"),
    ):
        rows = sim.get(f"/api/now/table/{table}", params={"sysparm_query": query}).json()
        for row in rows["result"]:
            sim.delete(f"/api/now/table/{table}/{row['sys_id']}").raise_for_status()


URL_PROPERTY, SECRET_PROPERTY = url_property("incident"), secret_property("incident")


def desk(server: Server, **overrides: Any) -> ServiceNowDeskConfig:
    return desk_at(server.url, **overrides)


def desk_at(url: str, **overrides: Any) -> ServiceNowDeskConfig:
    values: dict[str, Any] = {
        "kind": "servicenow", "base_url": url, "username": SIM.username,
        "password": SIM.password, "flag_field": "u_idv_request", "webhook_secret": SECRET,
        "triggers": {"mfa_reset": "MFA reset", "account_unlock": "account unlock"},
        **overrides,
    }  # fmt: skip
    return ServiceNowDeskConfig.model_validate(values)


def request(config: ServiceNowDeskConfig, **kwargs: Any) -> SetupRequest[ServiceNowDeskConfig]:
    kwargs.setdefault("public_url", PUBLIC)
    return SetupRequest(desk="acme_sn", config=config, admin=ADMIN, **kwargs)


def records(sim: httpx.Client) -> dict[str, dict[str, dict[str, str]]]:
    """Every metadata record setup makes, by table and sys_id, as the admin reads it."""
    ours = {w.sys_id for w in wanted("acme_sn", desk_at(str(sim.base_url)), PUBLIC)}
    out = {}
    for table in TABLES:
        rows = sim.get(f"/api/now/table/{table}").json()["result"]
        out[table] = {
            r["sys_id"]: {k: v for k, v in r.items() if not k.startswith("sys_") or k == "sys_id"}
            for r in rows
            if r["sys_id"] in ours
        }
    return out


def checks(config: ServiceNowDeskConfig, public_url: str | None = PUBLIC) -> dict[str, Check]:
    found = doctor(DoctorRequest(desk="acme_sn", config=config, public_url=public_url))
    return {c.name: c for c in found}


def checked(config: ServiceNowDeskConfig) -> list[Wanted]:
    """What doctor checks a line each for (an ACL's roles are checked with the ACL)."""
    return [w for w in wanted("acme_sn", config, PUBLIC) if w.table != "sys_security_acl_role"]


def failing(found: dict[str, Check]) -> dict[str, Check]:
    return {name: c for name, c in found.items() if c.status != "ok"}


# -- the update set ---------------------------------------------------------------------------


def payload_ids(data: bytes) -> set[str]:
    """The sys_ids of the records an update set's payloads carry."""
    return {
        body.findtext("sys_id") or "" for update in parse(data)[1] for body in update.payload
    } - {""}


def test_the_update_set_has_the_shape_of_a_real_export_and_holds_no_secret(
    server: Server,
) -> None:
    config = desk(server)
    first = render("acme_sn", config, PUBLIC, UNLOADED)
    assert first == render("acme_sn", config, PUBLIC, UNLOADED)
    root = ET.fromstring(first)  # noqa: S314 (our own output)
    assert (root.tag, root.get("unload_date")) == ("unload", UNLOADED)
    assert root.find("sys_remote_update_set/name").text == "Deskgate (acme_sn)"  # type: ignore[union-attr]
    for xml in root.iter("sys_update_xml"):
        assert (xml.findtext("application"), xml.findtext("update_domain")) == ("global", "global")
    _, updates = parse(first)
    by_name = {u.name: u for u in updates}
    # A field: one dictionary update named by what it coalesces on, its label apart.
    field = by_name["sys_dictionary_incident_u_idv_request"]
    body = field.payload[0]
    assert (field.type, body.tag, body.get("table"), body.get("element")) == (
        "Dictionary", "sys_dictionary", "incident", "u_idv_request"
    )  # fmt: skip
    label = by_name["sys_documentation_incident_u_idv_request_en"].payload[0]
    assert (label.tag, label.get("table"), label.get("element"), label.get("language")) == (
        "sys_documentation", "incident", "u_idv_request", "en"
    )  # fmt: skip
    assert label.get("label") == "Identity verification request"
    # A field's choices: one update holding the whole set.
    for element, values in (
        ("u_idv_request", ["mfa_reset", "account_unlock"]),
        ("u_idv_status", ["pending", "verified", "failed", "review", "expired", "error"]),
        ("u_idv_action", ["unlock", "reset_mfa", "reset_password", "revoke_sessions"]),
    ):
        choices = by_name[f"sys_choice_incident_{element}"].payload[0]
        assert (choices.get("table"), choices.get("field")) == ("incident", element)
        assert [c.tag for c in choices].count("sys_choice_set") == 1
        assert [c.findtext("value") for c in choices if c.tag == "sys_choice"] == values
    # role, 3 x (field, label, choices), 3 ACLs, URL, rule, 1 + 4 UI actions (verify, actions)
    assert len(updates) == 20
    assert not [u.name for u in updates if u.type in ("Dictionary", "Field Label", "Choice list")
                and any(i in u.name for i in payload_ids(first))]  # fmt: skip
    # A property belongs to no table; the secret's property is never in the file.
    [prop] = [u for u in updates if u.type == "System Property"]
    assert prop.table == ""
    assert prop.payload[0].findtext("name") == URL_PROPERTY
    assert prop.payload[0].findtext("value") == f"{PUBLIC}/webhooks/servicenow/acme_sn"
    assert SECRET.encode() not in first
    # The UI actions: form buttons on a saved record, for the roles that may ask (a
    # verification, or one identity-provider action each).
    ui_actions = {u.payload[0].findtext("action_name"): u.payload[0] for u in updates
                  if u.type == "UI Action"}  # fmt: skip
    assert set(ui_actions) == {"deskgate_request_verification", "deskgate_do_unlock",
                               "deskgate_do_reset_mfa", "deskgate_do_reset_password",
                               "deskgate_do_revoke_sessions"}  # fmt: skip
    for action in ui_actions.values():
        assert {k: action.findtext(k) for k in ("form_action", "show_insert", "show_update")} == {
            "form_action": "true", "show_insert": "false", "show_update": "true"
        }  # fmt: skip
        assert action.findtext("roles") == "itil"
    assert ui_actions["deskgate_do_reset_mfa"].findtext("name") == "Deskgate: reset MFA"
    # The ACLs, each with its roles; a stock role by name, the one setup makes by its sys_id.
    acls = {
        u.payload[0].findtext("name"): {
            r.find("sys_user_role").get("name"): r.findtext("sys_user_role")  # type: ignore[union-attr]
            for r in u.payload if r.tag == "sys_security_acl_role"
        }
        for u in updates if u.type == "Access Control"
    }  # fmt: skip
    assert set(acls) == {"incident.u_idv_status", "incident.u_idv_request", "incident.u_idv_action"}
    assert set(acls["incident.u_idv_status"]) == {"deskgate"}
    assert set(acls["incident.u_idv_request"]) == {"itil", "deskgate"}
    assert set(acls["incident.u_idv_action"]) == {"itil", "deskgate"}
    assert acls["incident.u_idv_request"]["itil"] == ""
    assert acls["incident.u_idv_status"]["deskgate"] in payload_ids(first)
    assert b"sys_user_has_role" not in first  # update sets carry no user's roles
    # A desk on another table of the same instance: its own fields, choices, ACLs, rule,
    # action and properties (its own endpoint and secret), so both desks push, each as itself;
    # only the role is the instance's, shared by every desk on it.
    other = render("other_sn", desk(server, table="sc_req_item"), PUBLIC, UNLOADED)
    shared = {u.payload[0].findtext("sys_id") for u in updates if u.type == "Role"}
    assert payload_ids(first) & payload_ids(other) == shared
    [other_prop] = [u for u in parse(other)[1] if u.type == "System Property"]
    assert other_prop.payload[0].findtext("name") == url_property("sc_req_item")


def test_setup_writes_the_file_once_and_names_the_manual_secret_step(
    server: Server, tmp_path: Path
) -> None:
    path = tmp_path / "deskgate.xml"
    config = desk(server)
    dry = setup(request(config, apply=False, update_set=path, dry_run=True))
    assert [c.action for c in dry] == [Action.WRITE, Action.MANUAL, Action.MANUAL]
    assert f"grant the role deskgate to Deskgate's integration user {SIM.username}" in dry[2].detail
    assert not path.exists()
    first = setup(request(config, apply=False, update_set=path))
    assert first[0].action == Action.WRITE
    assert first[1].name == SECRET_PROPERTY
    assert "DESKGATE_DESKS__ACME_SN__WEBHOOK_SECRET" in first[1].detail
    again = setup(request(config, apply=False, update_set=path))
    assert again[0].action == Action.UNCHANGED
    assert all(SECRET not in f"{c.detail}{c.name}" for c in [*dry, *first, *again])


def test_importing_the_update_set_yields_the_records_apply_writes(
    server: Server, sim: httpx.Client
) -> None:
    config = desk(server)
    uploaded = sim.post(
        "/sys_upload.do",
        files={"attachFile": ("deskgate.xml", render("acme_sn", config, PUBLIC), "text/xml")},
    )
    assert uploaded.status_code == 201, uploaded.text
    set_id = uploaded.json()["result"]["sys_id"]
    assert sim.post(f"/sys_remote_update_set/{set_id}/commit").status_code == 400  # unpreviewed
    preview = sim.post(f"/sys_remote_update_set/{set_id}/preview").json()["result"]
    assert preview["problems"] == []
    assert sim.post(f"/sys_remote_update_set/{set_id}/commit").json()["result"]["records"] == 20
    imported = records(sim)

    sim.post("/_sandbox/reset").raise_for_status()
    before_setup(sim)
    setup(request(config))
    applied = records(sim)
    secret = next(
        sys_id for sys_id, r in applied["sys_properties"].items() if r["name"] == SECRET_PROPERTY
    )
    # The same records with the same sys_ids, but for the secret's property, which only
    # --apply writes (set and fingerprinted).
    for table in TABLES:
        for sys_id, record in applied[table].items():
            if sys_id != secret:
                assert imported[table][sys_id] == record, (table, record.get("name"))
    assert secret not in imported["sys_properties"]
    assert applied["sys_properties"][secret]["value"] != ""
    assert SECRET not in str(applied)  # read back encrypted, never in clear
    # Every record but the integration user's role, which is no metadata.
    assert sum(len(rows) for rows in applied.values()) == len(wanted("acme_sn", config, PUBLIC)) - 1
    # Promoting (importing) the update set again later leaves the instance's secret as it is.
    again = sim.post(
        "/sys_upload.do",
        files={"attachFile": ("deskgate.xml", render("acme_sn", config, PUBLIC), "text/xml")},
    ).json()["result"]["sys_id"]
    sim.post(f"/sys_remote_update_set/{again}/preview").raise_for_status()
    sim.post(f"/sys_remote_update_set/{again}/commit").raise_for_status()
    assert records(sim)["sys_properties"][secret] == applied["sys_properties"][secret]


def test_an_update_set_for_a_missing_table_is_refused_at_commit(
    server: Server, sim: httpx.Client
) -> None:
    xml = render("acme_sn", desk(server, table="u_no_such_table"), PUBLIC)
    set_id = sim.post("/sys_upload.do", files={"attachFile": ("d.xml", xml, "text/xml")}).json()[
        "result"
    ]["sys_id"]
    problems = sim.post(f"/sys_remote_update_set/{set_id}/preview").json()["result"]["problems"]
    assert (
        "sys_dictionary_u_no_such_table_u_idv_request: no table 'u_no_such_table' on this "
        "instance" in problems
    )
    refused = sim.post(f"/sys_remote_update_set/{set_id}/commit")
    assert refused.status_code == 400
    assert sim.get("/api/now/table/sys_script").json()["result"] == []  # nothing half-applied


def test_an_update_set_upload_needs_an_admin(server: Server, sim: httpx.Client) -> None:
    refused = sim.post(
        "/sys_upload.do",
        files={"attachFile": ("d.xml", render("acme_sn", desk(server), PUBLIC), "text/xml")},
        auth=(SIM.username, SIM.password),
    )
    assert refused.status_code == 403
    garbage = sim.post("/sys_upload.do", files={"attachFile": ("d.xml", b"<unload>", "text/xml")})
    assert garbage.status_code == 400
    assert "well-formed" in garbage.json()["error"]["detail"]


# -- --apply ------------------------------------------------------------------------------------


def test_apply_creates_then_a_second_run_changes_nothing(server: Server, sim: httpx.Client) -> None:
    config = desk(server)
    dry = setup(request(config, dry_run=True))
    assert {c.action for c in dry} == {Action.CREATE}
    assert records(sim)["sys_script"] == {}  # a dry run writes nothing
    first = setup(request(config))
    assert [c.action for c in first] == [Action.CREATE] * len(wanted("acme_sn", config, PUBLIC))
    assert all(SECRET not in f"{c.name}{c.detail}" for c in first)
    second = setup(request(config))
    assert [(c.kind, c.action) for c in second] == [(c.kind, Action.UNCHANGED) for c in first]


def test_apply_updates_only_what_differs(server: Server, sim: httpx.Client) -> None:
    config = desk(server)
    setup(request(config))
    rule = sim.get("/api/now/table/sys_script").json()["result"][0]
    sim.patch(f"/api/now/table/sys_script/{rule['sys_id']}", json={"active": False})
    moved = setup(request(config, public_url="https://moved.acme.test"))
    changed = {(c.kind, c.name): c for c in moved if c.action != Action.UNCHANGED}
    assert set(changed) == {("property", URL_PROPERTY), ("business rule", RULE_NAME)}
    assert changed[("business rule", RULE_NAME)].detail == "fields: active"
    # A new secret: the fingerprint tells it apart, and the value is rewritten.
    rotated = setup(request(desk(server, webhook_secret="another-secret-value-1234")))
    updated = {c.name: c for c in rotated if c.action == Action.UPDATE}
    assert set(updated) == {URL_PROPERTY, SECRET_PROPERTY}
    assert "value" in updated[SECRET_PROPERTY].detail
    assert "another-secret" not in updated[SECRET_PROPERTY].detail


def test_apply_needs_an_admin_and_refuses_the_integration_user(
    server: Server, sim: httpx.Client
) -> None:
    config = desk(server)
    with pytest.raises(ProvisioningError, match="admin account"):
        setup(SetupRequest(desk="acme_sn", config=config, public_url=PUBLIC, admin=None))
    integration = AdminCredential(SIM.username, SecretStr(SIM.password))
    with pytest.raises(ProvisioningError, match="must not be Deskgate's integration user"):
        setup(SetupRequest(desk="acme_sn", config=config, public_url=PUBLIC, admin=integration))
    agent = AdminCredential(SIM.agent_username, SecretStr(SIM.agent_password))  # not an admin
    with pytest.raises(ProvisioningError, match=r"refused POST /api/now/table/sys_user_role.*403"):
        setup(SetupRequest(desk="acme_sn", config=config, public_url=PUBLIC, admin=agent))


def test_without_a_webhook_secret_apply_says_pushes_are_off(
    server: Server, sim: httpx.Client
) -> None:
    changes = setup(request(desk(server, webhook_secret=None)))
    manual = [c for c in changes if c.action == Action.MANUAL]
    assert [c.name for c in manual] == [SECRET_PROPERTY]
    assert "DESKGATE_DESKS__ACME_SN__WEBHOOK_SECRET" in manual[0].detail


def test_the_kind_offers_setup_and_doctor() -> None:
    assert KIND.setup is setup
    assert KIND.doctor is doctor


# -- doctor -------------------------------------------------------------------------------------


def test_doctor_is_all_ok_after_setup(server: Server, sim: httpx.Client) -> None:
    config = desk(server)
    setup(request(config))
    sim.post("/api/now/table/incident", json={"short_description": "x"}).raise_for_status()
    found = checks(config)
    assert failing(found) == {}
    access = {"credentials", "read incident", "write incident", "read sys_user", "read sys_audit",
              "audit sys_user.email", "audit sys_user.mobile_phone"}  # fmt: skip
    assert access <= set(found)
    assert f"business rule {RULE_NAME}" in found
    assert len(found) == len(access) + len(checked(config))


def test_doctor_names_a_contact_field_excluded_from_auditing(
    server: Server, sim: httpx.Client
) -> None:
    [entry] = sim.get(
        "/api/now/table/sys_dictionary",
        params={"sysparm_query": "name=sys_user^element=mobile_phone"},
    ).json()["result"]
    sim.patch(f"/api/now/table/sys_dictionary/{entry['sys_id']}",
              json={"attributes": "no_audit=true"}).raise_for_status()  # fmt: skip
    found = checks(desk(server))
    phone = found["audit sys_user.mobile_phone"]
    assert (phone.status, found["audit sys_user.email"].status) == ("fail", "ok")
    assert "no_audit=true" in phone.detail and "no_audit=true" in phone.fix
    off = checks(desk(server, destination_min_age_hours=0))
    assert "audit sys_user.mobile_phone" not in off  # no contact-age check, nothing to say


def test_doctor_on_an_empty_instance_names_setup_as_the_fix(
    server: Server, sim: httpx.Client
) -> None:
    found = failing(checks(desk(server)))
    assert found["write incident"].status == "warn"  # no record to try on
    missing = [c for c in found.values() if c.detail == "missing"]
    assert len(missing) == len(checked(desk(server))) - 1  # all but the user's role
    assert "does not hold the deskgate role" in found[f"user role {SIM.username}: deskgate"].detail
    assert all("deskgate setup acme_sn --apply" in c.fix for c in missing)


def test_doctor_names_each_misconfiguration_with_its_fix(server: Server, sim: httpx.Client) -> None:
    config = desk(server)
    setup(request(config))

    def patch(table: str, query: str, values: dict[str, Any]) -> None:
        row = sim.get(f"/api/now/table/{table}", params={"sysparm_query": query}).json()["result"]
        sim.patch(f"/api/now/table/{table}/{row[0]['sys_id']}", json=values).raise_for_status()

    patch("sys_properties", f"name={URL_PROPERTY}", {"value": "https://old.acme.test/hook"})
    patch("sys_script", f"name={RULE_NAME}", {"active": False})
    choice = sim.get(
        "/api/now/table/sys_choice", params={"sysparm_query": "element=u_idv_status^value=review"}
    ).json()["result"][0]
    sim.delete(f"/api/now/table/sys_choice/{choice['sys_id']}").raise_for_status()
    sim.put("/_sandbox/acl", json={"user": SIM.username, "table": "sys_user", "read": False})
    sim.put("/_sandbox/acl", json={"user": SIM.username, "table": "sys_audit", "read": False})

    found = failing(checks(config))
    assert set(found) == {
        f"property {URL_PROPERTY}",
        f"business rule {RULE_NAME}",
        "choice incident.u_idv_status=review",
        "read sys_user",
        "read sys_audit",  # contact ages unknowable: every verification would end in error
        "write incident",  # an empty table: nothing to try an update on
    }
    url = found[f"property {URL_PROPERTY}"]
    assert url.status == "fail"
    assert f"{PUBLIC}/webhooks/servicenow/acme_sn" in url.fix
    assert "https://old.acme.test/hook" in url.detail
    assert found[f"business rule {RULE_NAME}"].detail == "inactive"
    assert "active" in found[f"business rule {RULE_NAME}"].fix
    assert found["choice incident.u_idv_status=review"].detail == "missing"
    assert "sys_user" in found["read sys_user"].fix
    assert "destination_min_age_hours = 0" in found["read sys_audit"].fix
    assert all(c.fix for c in found.values())


def test_doctor_tells_a_wrong_secret_and_an_edited_script_without_showing_the_secret(
    server: Server, sim: httpx.Client
) -> None:
    setup(request(desk(server)))
    rule = sim.get("/api/now/table/sys_script").json()["result"][0]
    sim.patch(
        f"/api/now/table/sys_script/{rule['sys_id']}", json={"script": rule["script"] + "\n//"}
    ).raise_for_status()
    other = desk(server, webhook_secret="not-the-secret-setup-wrote")
    found = failing(checks(other))
    assert found[f"property {SECRET_PROPERTY}"].status == "fail"
    assert "fingerprint" in found[f"property {SECRET_PROPERTY}"].detail
    assert found[f"business rule {RULE_NAME}"].status == "warn"
    assert "script" in found[f"business rule {RULE_NAME}"].detail
    text = str(list(found.values()))
    assert SECRET not in text and "not-the-secret" not in text


def test_doctor_names_refused_credentials(server: Server, sim: httpx.Client) -> None:
    found = checks(desk(server, password="wrong-password"))
    assert list(found) == ["credentials"]
    assert found["credentials"].status == "fail"
    assert "401" in found["credentials"].fix


def test_the_docs_point_at_the_shipped_scripts_instead_of_a_copy() -> None:
    root = Path(__file__).resolve().parents[2]
    setup_doc = (root / "docs" / "setup.md").read_text()
    for script in ("business_rule.js", "ui_action.js"):
        link = f"../connectors/servicenow/{script}"
        assert link in setup_doc
        assert (root / "docs" / link).resolve().is_file()
    assert not list((root / "docs").glob("*.js"))  # no copy that could drift
    shipped = (root / "connectors" / "servicenow" / "business_rule.js").read_text()
    rule = next(
        w for w in wanted("acme_sn", desk_at("http://x"), PUBLIC) if w.table == "sys_script"
    )
    assert rule.values["script"] == shipped


# -- the protected fields -------------------------------------------------------------------


def acl_roles(sim: httpx.Client, name: str) -> set[str]:
    [acl] = sim.get(
        "/api/now/table/sys_security_acl", params={"sysparm_query": f"name={name}"}
    ).json()["result"]
    rows = sim.get(
        "/api/now/table/sys_security_acl_role",
        params={"sysparm_query": f"sys_security_acl={acl['sys_id']}",
                "sysparm_fields": "sys_user_role.name"},
    ).json()["result"]  # fmt: skip
    return {r["sys_user_role.name"] for r in rows}


def one(sim: httpx.Client, table: str, query: str) -> dict[str, Any]:
    [row] = sim.get(
        f"/api/now/table/{table}",
        params={"sysparm_query": query, "sysparm_exclude_reference_link": "true"},
    ).json()["result"]
    return dict(row)


def test_apply_protects_the_status_and_flag_fields_and_limits_the_ui_action(
    server: Server, sim: httpx.Client
) -> None:
    config = desk(server, verification_roles=["itil", "sn_request_write"])
    sim.post("/api/now/table/sys_user_role", json={"name": "sn_request_write"})
    setup(request(config))
    status = one(sim, "sys_security_acl", "name=incident.u_idv_status")
    assert (status["operation"], status["type"], status["active"]) == ("write", "record", "true")
    assert status["admin_overrides"] == "true"
    assert acl_roles(sim, "incident.u_idv_status") == {"deskgate"}
    # Deskgate's own user sets the flag back after an outcome, so it passes that ACL too.
    assert acl_roles(sim, "incident.u_idv_request") == {"itil", "sn_request_write", "deskgate"}
    assert one(sim, "sys_ui_action", "action_name=deskgate_request_verification")["roles"] == (
        "itil,sn_request_write"
    )
    role = one(sim, "sys_user_role", "name=deskgate")
    user = one(sim, "sys_user", f"user_name={SIM.username}")
    one(sim, "sys_user_has_role", f"user={user['sys_id']}^role={role['sys_id']}")
    # A role the instance lacks is named, not guessed.
    with pytest.raises(ProvisioningError, match=r"no sys_user_role 'x_nobody'.*verification_roles"):
        setup(request(desk(server, verification_roles=["x_nobody"])))


def test_apply_prints_the_manual_step_when_it_cannot_grant_the_role(
    server: Server, sim: httpx.Client
) -> None:
    changes = setup(request(desk(server, username="someone.else")))
    [manual] = [c for c in changes if c.kind == "user role"]
    assert manual.action == Action.MANUAL
    assert "grant the role deskgate to Deskgate's integration user someone.else" in manual.detail


def test_setup_keeps_and_reports_what_an_admin_tightened_and_repairs_what_breaks_deskgate(
    server: Server, sim: httpx.Client
) -> None:
    config = desk(server)
    setup(request(config))
    field = one(sim, "sys_dictionary", "name=incident^element=u_idv_status")
    sim.patch(f"/api/now/table/sys_dictionary/{field['sys_id']}", json={"read_only": "true"})
    action = one(sim, "sys_ui_action", "action_name=deskgate_request_verification")
    narrower = action["condition"] + " && gs.hasRole('itil_admin')"
    sim.patch(
        f"/api/now/table/sys_ui_action/{action['sys_id']}",
        json={"condition": narrower, "roles": "itil_admin"},
    ).raise_for_status()
    flag_acl = one(sim, "sys_security_acl", "name=incident.u_idv_request")
    admin_role = one(sim, "sys_user_role", "name=admin")
    sim.post(
        "/api/now/table/sys_security_acl_role",
        json={"sys_security_acl": flag_acl["sys_id"], "sys_user_role": admin_role["sys_id"]},
    ).raise_for_status()
    # And two things that would break Deskgate: the status ACL off, the UI action's roles gone.
    status_acl = one(sim, "sys_security_acl", "name=incident.u_idv_status")
    sim.patch(f"/api/now/table/sys_security_acl/{status_acl['sys_id']}", json={"active": "false"})

    first, second = setup(request(config)), setup(request(config))
    for run in (first, second):
        by_name = {c.name: c for c in run}
        assert "kept the admin's read_only" in by_name["incident.u_idv_status"].detail
        assert "kept the admin's condition, roles" in by_name[UI_ACTION_NAME].detail
        assert "extra roles: admin" in by_name["write incident.u_idv_request"].detail
    repaired = {c.name: c.detail for c in first if c.action == Action.UPDATE}
    assert repaired == {"write incident.u_idv_status": "fields: active"}
    assert {c.action for c in second} == {Action.UNCHANGED}
    assert one(sim, "sys_dictionary", f"sys_id={field['sys_id']}")["read_only"] == "true"
    kept = one(sim, "sys_ui_action", f"sys_id={action['sys_id']}")
    assert (kept["condition"], kept["roles"]) == (narrower, "itil_admin")
    assert acl_roles(sim, "incident.u_idv_request") == {"itil", "deskgate", "admin"}
    assert one(sim, "sys_security_acl", f"sys_id={status_acl['sys_id']}")["active"] == "true"
    # A condition that no longer holds Deskgate's own is replaced (it could show the button
    # while a verification is open).
    sim.patch(
        f"/api/now/table/sys_ui_action/{action['sys_id']}", json={"condition": "true"}
    ).raise_for_status()
    [fixed] = [c for c in setup(request(config)) if c.name == UI_ACTION_NAME]
    assert fixed.action == Action.UPDATE and "fields: condition" in fixed.detail


def test_doctor_names_a_weakened_protection_with_its_fix(server: Server, sim: httpx.Client) -> None:
    config = desk(server)
    setup(request(config))
    sim.post("/api/now/table/incident", json={"short_description": "x"}).raise_for_status()
    grant = one(sim, "sys_user_has_role", "role.name=deskgate")
    sim.delete(f"/api/now/table/sys_user_has_role/{grant['sys_id']}").raise_for_status()
    status_acl = one(sim, "sys_security_acl", "name=incident.u_idv_status")
    itil = one(sim, "sys_user_role", "name=itil")
    sim.post(
        "/api/now/table/sys_security_acl_role",
        json={"sys_security_acl": status_acl["sys_id"], "sys_user_role": itil["sys_id"]},
    ).raise_for_status()
    flag_acl = one(sim, "sys_security_acl", "name=incident.u_idv_request")
    sim.patch(f"/api/now/table/sys_security_acl/{flag_acl['sys_id']}", json={"active": "false"})
    action = one(sim, "sys_ui_action", "action_name=deskgate_request_verification")
    sim.patch(f"/api/now/table/sys_ui_action/{action['sys_id']}", json={"roles": ""})

    found = failing(checks(config))
    assert {name: c.status for name, c in found.items()} == {
        f"user role {SIM.username}: deskgate": "fail",
        "ACL write incident.u_idv_status": "warn",
        "ACL write incident.u_idv_request": "fail",
        f"UI action {UI_ACTION_NAME}": "fail",
    }
    assert (
        f"grant {SIM.username} the role deskgate"
        in found[f"user role {SIM.username}: deskgate"].fix
    )
    assert "itil may also write the status" in found["ACL write incident.u_idv_status"].detail
    assert "inactive" in found["ACL write incident.u_idv_request"].detail
    assert "set its roles to itil" in found[f"UI action {UI_ACTION_NAME}"].fix


# -- the command ------------------------------------------------------------------------------


def test_the_command_writes_the_update_set_without_an_admin(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = settings_data()
    incode = data["incode"]
    lines = [f'public_url = "{PUBLIC}"', "[incode]"] + [
        f'{key} = "{incode[key]}"'
        for key in ("api_url", "auth_url", "integration_reference", "client_id", "executive_email")
    ]
    lines += ["[desks.acme_sn]", 'kind = "servicenow"', f'base_url = "{server.url}"',
              f'username = "{SIM.username}"']  # fmt: skip
    (tmp_path / "deskgate.toml").write_text("\n".join(lines) + "\n")
    env = {
        "DESKGATE_CONFIG": str(tmp_path / "deskgate.toml"),
        "DESKGATE_NOTE_SECRET": data["note_secret"],
        "DESKGATE_INCODE__CLIENT_SECRET": incode["client_secret"],
        "DESKGATE_INCODE__API_KEY": incode["api_key"],
        "DESKGATE_INCODE__EXECUTIVE_PASSWORD": incode["executive_password"],
        "DESKGATE_INCODE__WEBHOOK_SECRET": incode["webhook_secret"],
        "DESKGATE_DESKS__ACME_SN__PASSWORD": SIM.password,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DESKGATE_ADMIN_USER", raising=False)
    monkeypatch.delenv("DESKGATE_ADMIN_SECRET", raising=False)
    path = tmp_path / "deskgate.xml"
    assert cli.main(["setup", "acme_sn", "--update-set", str(path)]) == 0
    assert parse(path.read_bytes())[0]["name"] == "Deskgate (acme_sn)"
    # Applying it talks to the instance: that still needs the admin.
    assert cli.main(["setup", "acme_sn", "--update-set", str(path), "--apply"]) == 2
