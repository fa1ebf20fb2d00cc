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
from connectors.servicenow.records import RULE_NAME, secret_property, url_property, wanted
from connectors.servicenow.setup import setup
from connectors.servicenow.update_set import parse, render
from sandbox.common import Server, serve
from sandbox.servicenow import ServiceNowSimConfig, create_app

SIM = ServiceNowSimConfig()
PUBLIC = "https://deskgate.acme.test"
SECRET = "a-push-secret-of-some-length"
ADMIN = AdminCredential(SIM.admin_username, SecretStr(SIM.admin_password))
TABLES = ("sys_dictionary", "sys_choice", "sys_properties", "sys_script", "sys_ui_action")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = serve(create_app(SIM))
    yield srv
    srv.stop()


@pytest.fixture
def sim(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=(SIM.admin_username, SIM.admin_password)) as c:
        c.post("/_sandbox/reset").raise_for_status()
        yield c


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


def failing(found: dict[str, Check]) -> dict[str, Check]:
    return {name: c for name, c in found.items() if c.status != "ok"}


# -- the update set ---------------------------------------------------------------------------


def test_the_update_set_is_well_formed_deterministic_and_holds_no_secret(server: Server) -> None:
    config = desk(server)
    first, again = render("acme_sn", config, PUBLIC), render("acme_sn", config, PUBLIC)
    assert first == again
    root = ET.fromstring(first)  # noqa: S314 (our own output)
    assert root.tag == "unload"
    assert root.find("sys_remote_update_set/name").text == "Deskgate (acme_sn)"  # type: ignore[union-attr]
    _, rows = parse(first)
    tables = [table for table, _ in rows]
    assert tables.count("sys_dictionary") == 2
    assert tables.count("sys_properties") == 1  # the URL; never the secret's property
    assert (tables.count("sys_script"), tables.count("sys_ui_action")) == (1, 1)
    # Two flag values and six status markers, each a choice.
    assert tables.count("sys_choice") == 8
    assert SECRET.encode() not in first
    assert all(v["name"] != SECRET_PROPERTY for t, v in rows if t == "sys_properties")
    url = next(v for t, v in rows if t == "sys_properties" and v["name"] == URL_PROPERTY)
    assert url["value"] == f"{PUBLIC}/webhooks/servicenow/acme_sn"
    # A desk on another table of the same instance: its own fields, choices, rule, action and
    # properties (its own endpoint and secret), so both desks push, each as itself.
    other = render("other_sn", desk(server, table="sc_req_item"), PUBLIC)
    shared = {v["sys_id"] for _, v in rows} & {v["sys_id"] for _, v in parse(other)[1]}
    assert shared == set()
    names = {v["name"] for t, v in parse(other)[1] if t == "sys_properties"}
    assert names == {url_property("sc_req_item")}


def test_setup_writes_the_file_once_and_names_the_manual_secret_step(
    server: Server, tmp_path: Path
) -> None:
    path = tmp_path / "deskgate.xml"
    config = desk(server)
    dry = setup(request(config, apply=False, update_set=path, dry_run=True))
    assert [c.action for c in dry] == [Action.WRITE, Action.MANUAL]
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
    assert sim.post(f"/sys_remote_update_set/{set_id}/commit").json()["result"]["records"] == 13
    imported = records(sim)

    sim.post("/_sandbox/reset").raise_for_status()
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
    assert sum(len(rows) for rows in applied.values()) == 14
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
    assert "sys_dictionary: no table 'u_no_such_table'" in problems
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
    with pytest.raises(ProvisioningError, match=r"refused POST /api/now/table/sys_dictionary.*403"):
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
    assert len(found) == len(access) + len(wanted("acme_sn", config, PUBLIC))


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
    assert len(missing) == len(wanted("acme_sn", desk(server), PUBLIC))
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
