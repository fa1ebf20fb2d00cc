"""The ServiceNow simulator's update set import over real HTTP, with a hand-written export in the
platform's own shape (``tests/fixtures/servicenow/update_set_export.xml``): each record type goes
through its handler as on an instance, and a malformed update is a preview problem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.common import Server, serve
from sandbox.servicenow import ServiceNowSimConfig, create_app

CFG = ServiceNowSimConfig()
EXPORT = (
    Path(__file__).parents[1] / "fixtures" / "servicenow" / "update_set_export.xml"
).read_bytes()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = serve(create_app(CFG))
    yield srv
    srv.stop()


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=(CFG.admin_username, CFG.admin_password)) as c:
        c.post("/_sandbox/reset").raise_for_status()
        yield c


def rows(admin: httpx.Client, table: str, query: str = "", **params: str) -> list[dict[str, Any]]:
    resp = admin.get(
        f"/api/now/table/{table}",
        params={"sysparm_query": query, "sysparm_exclude_reference_link": "true", **params},
    )
    assert resp.status_code == 200, resp.text
    found: list[dict[str, Any]] = resp.json()["result"]
    return found


def load(admin: httpx.Client, data: bytes) -> tuple[str, list[str]]:
    """Upload and preview: the retrieved set's sys_id and the preview's problems."""
    uploaded = admin.post("/sys_upload.do", files={"attachFile": ("set.xml", data, "text/xml")})
    assert uploaded.status_code == 201, uploaded.text
    set_id = str(uploaded.json()["result"]["sys_id"])
    preview = admin.post(f"/sys_remote_update_set/{set_id}/preview")
    assert preview.status_code == 200, preview.text
    return set_id, list(preview.json()["result"]["problems"])


def commit(admin: httpx.Client, data: bytes) -> None:
    set_id, problems = load(admin, data)
    assert problems == []
    admin.post(f"/sys_remote_update_set/{set_id}/commit").raise_for_status()


def test_a_real_format_export_goes_through_each_record_types_handler(admin: httpx.Client) -> None:
    # What the instance had before: the column under another sys_id (as every instance gives
    # its own), and a choice the export's set does not hold.
    admin.post(
        "/api/now/table/sys_dictionary",
        json={"name": "incident", "element": "u_fixture_status", "internal_type": "string",
              "column_label": "Old label", "max_length": "20"},
    ).raise_for_status()  # fmt: skip
    admin.post(
        "/api/now/table/sys_choice",
        json={"name": "incident", "element": "u_fixture_status", "value": "old", "label": "Old"},
    ).raise_for_status()

    for _ in range(2):  # committing the same set again changes nothing more
        commit(admin, EXPORT)
        # The field: the existing column, found by table and element, updated; its label set.
        [column] = rows(admin, "sys_dictionary", "name=incident^element=u_fixture_status")
        assert (column["max_length"], column["column_label"]) == ("40", "Fixture status")
        [label] = rows(admin, "sys_documentation", "name=incident^element=u_fixture_status")
        assert (label["label"], label["language"]) == ("Fixture status", "en")
        # The choice list replaces the field's choices.
        choices = rows(admin, "sys_choice", "name=incident^element=u_fixture_status")
        assert sorted(c["value"] for c in choices) == ["one", "two"]
        assert len(rows(admin, "sys_choice_set", "name=incident^element=u_fixture_status")) == 1
        # The ACL and its roles: one by the sys_id the export gives it, the stock role by name.
        [acl] = rows(admin, "sys_security_acl", "name=incident.u_fixture_status")
        assert (acl["operation"], acl["type"], acl["active"]) == ("write", "record", "true")
        roles = rows(
            admin, "sys_security_acl_role", f"sys_security_acl={acl['sys_id']}",
            sysparm_fields="sys_user_role.name",
        )  # fmt: skip
        assert sorted(r["sys_user_role.name"] for r in roles) == ["itil", "x_fixture_requester"]
        # The plain records, by sys_id.
        [prop] = rows(admin, "sys_properties", "name=x_fixture.url")
        assert prop["value"] == "https://fixture.example.test/hook"
        [rule] = rows(admin, "sys_script", "name=Fixture rule")
        assert (rule["collection"], rule["active"], rule["when"]) == ("incident", "false", "after")
        assert "gs.info('fixture '" in rule["script"]
        [action] = rows(admin, "sys_ui_action", "action_name=x_fixture_check")
        assert (action["roles"], action["form_action"], action["show_insert"]) == (
            "x_fixture_requester", "true", "false"
        )  # fmt: skip
    # The column exists on the table: a record takes a value in it.
    made = admin.post("/api/now/table/incident", json={"u_fixture_status": "two"}).json()
    assert made["result"]["u_fixture_status"] == "two"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            (b'element="u_fixture_status" table="incident"&gt;&lt;active', b"&gt;&lt;active"),
            "without its element and table attributes",
        ),
        ((b'name="itil"', b'name="x_no_such_role"'), "Could not find a record in sys_user_role"),
        ((b'table="incident"&gt;&lt;active', b'table="u_nowhere"&gt;&lt;active'), "no table"),
        ((b"sys_properties", b"sys_nothing"), "no update handler for 'sys_nothing'"),
    ],
    ids=["dictionary without element and table", "unknown role", "unknown table", "no handler"],
)
def test_a_malformed_update_is_a_preview_problem_and_nothing_commits(
    admin: httpx.Client, edit: tuple[bytes, bytes], problem: str
) -> None:
    old, new = edit
    assert old in EXPORT
    set_id, problems = load(admin, EXPORT.replace(old, new))
    assert any(problem in p for p in problems), problems
    refused = admin.post(f"/sys_remote_update_set/{set_id}/commit")
    assert refused.status_code == 400
    assert problem in refused.json()["error"]["detail"]
    assert rows(admin, "sys_user_role", "name=x_fixture_requester") == []  # nothing half-applied
