"""Action requests from the ticket (issue #18), on both desk simulators over real HTTP, set up by
``deskgate setup`` itself: an agent's macro (Zendesk) or UI action (ServiceNow) pushes to
Deskgate's webhook with no poll at all, the pushed ticket reads with ``action_request`` set,
``requested_by`` names the agent who pressed it, ``clear_action`` removes exactly the request and
never overwrites an agent's concurrent edit, and two requests at once are no request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import structlog
from flask import Flask, request
from pydantic import SecretStr

from connectors.http import Conflict
from connectors.provisioning import Action, AdminCredential, DoctorRequest, SetupRequest, Status
from connectors.servicenow import push as servicenow_push
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.doctor import doctor as servicenow_doctor
from connectors.servicenow.records import secret_property
from connectors.servicenow.setup import setup as servicenow_setup
from connectors.servicenow.update_set import render
from connectors.ticketing import PushAuth
from connectors.zendesk import objects
from connectors.zendesk import push as zendesk_push
from connectors.zendesk.config import ZendeskDeskConfig
from connectors.zendesk.connector import ZendeskConnector
from connectors.zendesk.doctor import doctor as zendesk_doctor
from connectors.zendesk.setup import client, find_macro, find_trigger
from connectors.zendesk.setup import setup as zendesk_setup
from sandbox import servicenow as sn_sim
from sandbox import zendesk as zd_sim
from sandbox.common import Server, serve
from sandbox.servicenow_driver import ServiceNowDriver
from sandbox.zendesk_driver import ZendeskDriver

BOUND = 10.0  # seconds a push may take to arrive (the simulators send within a second)
DESK = "acme"


@dataclass
class Inbox:
    """Deskgate's webhook endpoint as far as these tests need it: what arrived, by kind."""

    server: Server
    pushes: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, kind: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.pushes.get(kind, []))

    def wait(self, kind: str, count: int) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            got = self.received(kind)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{count} {kind} pushes expected within {BOUND}s, got {got}")


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    app = Flask("inbox")
    box: list[Inbox] = []

    @app.post("/webhooks/<kind>")
    @app.post("/webhooks/<kind>/<desk>")  # a ServiceNow desk's own endpoint
    def receive(kind: str, desk: str = "") -> tuple[str, int]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        with box[0].lock:
            box[0].pushes.setdefault(kind, []).append((headers, request.get_data()))
        return "", 202

    box.append(Inbox(serve(app)))
    yield box[0]
    box[0].server.stop()


def auth(headers: dict[str, str], body: bytes) -> PushAuth:
    return PushAuth(headers=headers, body=body, now=time.time(), tolerance_seconds=300)


# -- Zendesk -----------------------------------------------------------------------------------

ZD = zd_sim.ZendeskSimConfig()


@pytest.fixture(scope="module")
def zendesk_server() -> Iterator[Server]:
    server = serve(zd_sim.create_app(ZD))
    yield server
    server.stop()


@pytest.fixture
def zendesk(zendesk_server: Server, inbox: Inbox) -> Iterator[tuple[ZendeskDeskConfig, Any]]:
    """An account ``deskgate setup`` provisioned, its webhook pointing at the inbox."""
    httpx.post(f"{zendesk_server.url}/_sandbox/reset", json={"account": True}).raise_for_status()
    config = ZendeskDeskConfig.model_validate(
        {"kind": "zendesk", "base_url": zendesk_server.url, "email": ZD.email,
         "api_token": ZD.api_token, "webhook_secret": ZD.webhook_secret,
         "triggers": {"idv_mfa_reset": "MFA reset"}}
    )  # fmt: skip
    changes = zendesk_setup(zendesk_request(config, inbox))
    assert Action.CREATE in {c.action for c in changes}
    with inbox.lock:
        inbox.pushes.clear()
    sim = httpx.Client(base_url=zendesk_server.url, timeout=10)
    driver = ZendeskDriver(sim, ZD)
    yield config, driver
    driver.close()
    sim.close()


def zendesk_request(config: ZendeskDeskConfig, inbox: Inbox) -> SetupRequest[ZendeskDeskConfig]:
    admin = AdminCredential(ZD.admin_email, SecretStr(ZD.api_token))
    return SetupRequest(desk=DESK, config=config, public_url=inbox.server.url, admin=admin)


def zendesk_pushed(inbox: Inbox, count: int) -> list[str]:
    """The ticket ids of the first ``count`` pushes, each signed with the webhook's secret."""
    ids = []
    for headers, body in inbox.wait("zendesk", count):
        assert zendesk_push.verify_push(auth(headers, body), [ZD.webhook_secret])
        ids += zendesk_push.pushed_ticket_ids(json.loads(body))
    return ids


def agent_id(driver: ZendeskDriver) -> str:
    return str(driver.agent.get("/users/me.json").json()["user"]["id"])


def test_zendesk_a_macro_pushes_once_and_the_ticket_names_the_action_and_who_asked(
    zendesk: tuple[ZendeskDeskConfig, ZendeskDriver], inbox: Inbox
) -> None:
    config, driver = zendesk
    desk = ZendeskConnector(DESK, config, 5.0)
    ticket_id = driver.create_ticket("Jane Employee", "jane@acme.test", "Reset my MFA")
    driver.ask_action(ticket_id, "reset_mfa")  # the agent's click on "Deskgate: reset MFA"

    assert zendesk_pushed(inbox, 1) == [ticket_id]
    ticket = desk.get_ticket(ticket_id)
    assert ticket is not None and ticket.action_request == "reset_mfa"
    # Who pressed it: the agent, not Deskgate's API user, not the requester.
    by = desk.requested_by(ticket, "reset_mfa")
    assert by == agent_id(driver)
    assert by not in (desk._my_id(), ticket.requester_id)
    assert desk.find_flagged(None)[0] == [ticket_id]  # the poller finds it too

    # The trigger fired once: the requester's reply and an agent's note push nothing more.
    driver.reply(ticket_id, "Thanks!")
    driver.comment(ticket_id, "On it.")
    time.sleep(1.0)
    assert len(inbox.received("zendesk")) == 1

    cleared = desk.clear_action(desk.get_ticket(ticket_id) or ticket, "Deskgate: MFA reset done")
    assert cleared.action_request is None
    tags = set(driver.raw(ticket_id)["ticket"]["tags"])
    assert not tags & {"idv_do_reset_mfa", objects.action_sent_tag(config)}
    assert desk.find_flagged(None)[0] == []
    assert "Deskgate: MFA reset done" in driver.notes(ticket_id)
    # Asked again after the clear: a second push.
    driver.ask_action(ticket_id, "unlock")
    assert zendesk_pushed(inbox, 2) == [ticket_id, ticket_id]
    desk.close()


def test_zendesk_clear_action_removes_only_the_request_and_never_an_agents_edit(
    zendesk: tuple[ZendeskDeskConfig, ZendeskDriver], inbox: Inbox
) -> None:
    config, driver = zendesk
    desk = ZendeskConnector(DESK, config, 5.0)
    ticket_id = driver.create_ticket("Jane Employee", "jane@acme.test", "Unlock me")
    driver.ask_action(ticket_id, "unlock")
    zendesk_pushed(inbox, 1)
    read = desk.get_ticket(ticket_id)
    assert read is not None and read.action_request == "unlock"
    driver.api.put(f"/tickets/{ticket_id}/tags.json", json={"tags": ["vip"]}).raise_for_status()
    with pytest.raises(Conflict):  # the agent's edit since the read stands
        desk.clear_action(read, "cleared")
    fresh = desk.get_ticket(ticket_id)
    assert fresh is not None
    desk.clear_action(fresh, "cleared")
    tags = set(driver.raw(ticket_id)["ticket"]["tags"])
    assert "vip" in tags and "idv_do_unlock" not in tags
    desk.close()


@pytest.mark.parametrize(
    ("tags", "asked"),
    [
        (["idv_do_unlock"], "unlock"),
        (["idv_do_unlock", "idv_do_reset_mfa"], None),  # two at once: never guessed
        (["idv_do_unlock", "idv_do_everything"], None),
        (["idv_do_everything"], None),  # unknown
        (["idv_do_"], None),
        (["do_unlock", "idv_unlock"], None),  # not Deskgate's request tag
    ],
)
def test_zendesk_reads_one_known_action_or_none(
    zendesk: tuple[ZendeskDeskConfig, ZendeskDriver], tags: list[str], asked: str | None
) -> None:
    config, driver = zendesk
    desk = ZendeskConnector(DESK, config, 5.0)
    ticket_id = driver.create_ticket("Jane Employee", None, "Help")
    driver.api.put(f"/tickets/{ticket_id}/tags.json", json={"tags": tags}).raise_for_status()
    ticket = desk.get_ticket(ticket_id)
    assert ticket is not None and ticket.action_request == asked
    desk.close()


def test_zendesk_setup_is_idempotent_and_doctor_names_a_missing_action_macro(
    zendesk: tuple[ZendeskDeskConfig, ZendeskDriver], inbox: Inbox, zendesk_server: Server
) -> None:
    config, _ = zendesk
    again = zendesk_setup(zendesk_request(config, inbox))
    assert {c.action for c in again} == {Action.UNCHANGED}
    admin = AdminCredential(ZD.admin_email, SecretStr(ZD.api_token))
    req = DoctorRequest(desk=DESK, config=config, public_url=inbox.server.url, admin=admin)
    assert [c.name for c in zendesk_doctor(req) if c.status is not Status.OK] == []

    with client(config, admin, 5.0) as api:
        title = objects.action_macro_title("reset_mfa")
        macro = find_macro(api, config, title)
        assert macro is not None
        # An admin's edit that would turn the macro into a no-op, and the trigger switched off.
        api.put(f"/macros/{macro['id']}", json={"macro": {"active": False}}).raise_for_status()
        found = find_trigger(api, config, objects.action_trigger_title(DESK))
        assert found is not None
        api.put(f"/triggers/{found['id']}", json={"trigger": {"active": False}}).raise_for_status()
    bad = {c.name: c for c in zendesk_doctor(req) if c.status is not Status.OK}
    assert set(bad) == {f"macro {title!r}", "action trigger is active"}
    assert bad[f"macro {title!r}"].status is Status.WARN
    assert "deskgate setup" in bad[f"macro {title!r}"].fix
    repaired = {(c.kind, c.name): c.action for c in zendesk_setup(zendesk_request(config, inbox))}
    assert repaired[("macro", title)] is Action.UPDATE
    assert repaired[("trigger", objects.action_trigger_title(DESK))] is Action.UPDATE


# -- ServiceNow --------------------------------------------------------------------------------

SN = sn_sim.ServiceNowSimConfig()
SN_SECRET = "an-action-push-secret-of-some-length"


@pytest.fixture(scope="module")
def servicenow_server() -> Iterator[Server]:
    server = serve(sn_sim.create_app(SN))
    yield server
    server.stop()


@pytest.fixture
def servicenow(
    servicenow_server: Server, inbox: Inbox
) -> Iterator[tuple[ServiceNowDeskConfig, ServiceNowDriver]]:
    """An instance ``deskgate setup --apply`` provisioned, its push URL at the inbox."""
    httpx.post(f"{servicenow_server.url}/_sandbox/reset").raise_for_status()
    config = ServiceNowDeskConfig.model_validate(
        {"kind": "servicenow", "base_url": servicenow_server.url, "username": SN.username,
         "password": SN.password, "flag_field": "u_idv_request", "consumed_value": "",
         "webhook_secret": SN_SECRET, "triggers": {"mfa_reset": "MFA reset"}}
    )  # fmt: skip
    servicenow_setup(servicenow_request(config, inbox))
    with inbox.lock:
        inbox.pushes.clear()
    sim = httpx.Client(base_url=servicenow_server.url, timeout=10)
    driver = ServiceNowDriver(sim, SN)
    yield config, driver
    driver.close()
    sim.close()


def servicenow_request(
    config: ServiceNowDeskConfig, inbox: Inbox
) -> SetupRequest[ServiceNowDeskConfig]:
    admin = AdminCredential(SN.admin_username, SecretStr(SN.admin_password))
    return SetupRequest(desk=DESK, config=config, public_url=inbox.server.url, admin=admin)


def verified_record(config: ServiceNowDeskConfig, driver: ServiceNowDriver) -> str:
    """A record whose verification ended verified, as Deskgate's outcome write leaves it."""
    ticket_id = driver.create_ticket("Jane Employee", "jane@acme.test", "Reset my MFA")
    driver.api.patch(
        f"/incident/{ticket_id}", json={config.status_field: "verified"},
        auth=(SN.username, SN.password),
    ).raise_for_status()  # fmt: skip
    return ticket_id


def servicenow_pushed(inbox: Inbox, count: int) -> list[str]:
    ids = []
    for headers, body in inbox.wait("servicenow", count):
        assert servicenow_push.verify_push(auth(headers, body), [SN_SECRET])
        ids += servicenow_push.pushed_ticket_ids(json.loads(body))
    return ids


def test_servicenow_a_ui_action_pushes_and_the_record_names_the_action_and_who_asked(
    servicenow: tuple[ServiceNowDeskConfig, ServiceNowDriver], inbox: Inbox
) -> None:
    config, driver = servicenow
    desk = ServiceNowConnector(DESK, config, 5.0)
    ticket_id = verified_record(config, driver)
    assert inbox.received("servicenow") == []  # Deskgate's own outcome write pushes nothing
    driver.ask_action(ticket_id, "reset_mfa")  # the agent's click on "Deskgate: reset MFA"

    assert servicenow_pushed(inbox, 1) == [ticket_id]
    ticket = desk.get_ticket(ticket_id)
    assert ticket is not None and ticket.action_request == "reset_mfa"
    by = desk.requested_by(ticket, "reset_mfa")
    assert by == SN.agent_username  # not Deskgate's user, not the caller
    assert desk.requested_by(ticket, "unlock") is None
    assert ticket_id in desk.find_flagged(None)[0]

    cleared = desk.clear_action(ticket, "Deskgate: MFA reset done")
    assert cleared.action_request is None and cleared.marker == "verified"
    assert ticket_id not in desk.find_flagged(None)[0]
    assert "Deskgate: MFA reset done" in driver.notes(ticket_id)
    time.sleep(0.5)
    assert len(inbox.received("servicenow")) == 1  # clearing the field pushes nothing
    desk.close()


def test_servicenow_clear_action_never_overwrites_an_agents_edit(
    servicenow: tuple[ServiceNowDeskConfig, ServiceNowDriver], inbox: Inbox
) -> None:
    config, driver = servicenow
    desk = ServiceNowConnector(DESK, config, 5.0)
    ticket_id = verified_record(config, driver)
    driver.ask_action(ticket_id, "unlock")
    servicenow_pushed(inbox, 1)
    read = desk.get_ticket(ticket_id)
    assert read is not None and read.action_request == "unlock"
    driver.api.patch(f"/incident/{ticket_id}", json={"short_description": "edited"},
                     auth=(SN.agent_username, SN.agent_password)).raise_for_status()  # fmt: skip
    with pytest.raises(Conflict):
        desk.clear_action(read, "cleared")
    fresh = desk.get_ticket(ticket_id)
    assert fresh is not None
    desk.clear_action(fresh, "cleared")
    record = driver.raw(ticket_id)["record"]
    assert (record["short_description"], record.get(config.action_field, "")) == ("edited", "")
    desk.close()


def test_servicenow_an_unknown_value_is_no_request_and_pushes_nothing(
    servicenow: tuple[ServiceNowDeskConfig, ServiceNowDriver], inbox: Inbox
) -> None:
    config, driver = servicenow
    desk = ServiceNowConnector(DESK, config, 5.0)
    ticket_id = verified_record(config, driver)
    admin = (SN.admin_username, SN.admin_password)
    driver.api.patch(f"/incident/{ticket_id}", json={config.action_field: "everything"},
                     auth=admin).raise_for_status()  # fmt: skip
    ticket = desk.get_ticket(ticket_id)
    assert ticket is not None and ticket.action_request is None
    assert ticket_id not in desk.find_flagged(None)[0]
    time.sleep(0.5)
    assert inbox.received("servicenow") == []  # the rule's condition names the actions only
    desk.close()


def test_servicenow_setup_is_idempotent_and_doctor_names_a_missing_ui_action(
    servicenow: tuple[ServiceNowDeskConfig, ServiceNowDriver], inbox: Inbox
) -> None:
    config, driver = servicenow
    again = servicenow_setup(servicenow_request(config, inbox))
    assert {c.action for c in again} == {Action.UNCHANGED}, [
        c for c in again if c.action is not Action.UNCHANGED
    ]
    admin = AdminCredential(SN.admin_username, SecretStr(SN.admin_password))
    req = DoctorRequest(desk=DESK, config=config, public_url=inbox.server.url, admin=admin)
    before = {c.name for c in servicenow_doctor(req) if c.status is not Status.OK}
    rows = driver.api.get(
        "/sys_ui_action", auth=(SN.admin_username, SN.admin_password),
        params={"sysparm_query": "action_name=deskgate_do_reset_mfa", "sysparm_fields": "sys_id"},
    ).json()["result"]  # fmt: skip
    [row] = rows
    driver.api.delete(f"/sys_ui_action/{row['sys_id']}",
                      auth=(SN.admin_username, SN.admin_password)).raise_for_status()  # fmt: skip
    after = {c.name: c for c in servicenow_doctor(req) if c.status is not Status.OK}
    assert set(after) - before == {"UI action Deskgate: reset MFA"}
    assert after["UI action Deskgate: reset MFA"].detail == "missing"


def test_zendesk_doctor_warns_where_a_caller_could_ask_for_an_action_themselves(
    zendesk: tuple[ZendeskDeskConfig, ZendeskDriver], inbox: Inbox
) -> None:
    """A requester cannot add tags on Zendesk; a request-form field or a trigger on their words
    that adds an action request's tag would let them. Doctor warns as it does for the flag."""
    config, _ = zendesk
    admin = AdminCredential(ZD.admin_email, SecretStr(ZD.api_token))
    with client(config, admin, 5.0) as api:
        options = [{"name": "Reset MFA", "value": "idv_do_reset_mfa"}, {"name": "x", "value": "x"}]
        field = {"type": "tagger", "title": "Wish", "custom_field_options": options,
                 "visible_in_portal": True, "editable_in_portal": True}  # fmt: skip
        api.post("/ticket_fields", json={"ticket_field": field}).raise_for_status()
        words = {"field": "comment_includes_word", "operator": "includes", "value": "unlock"}
        rule = {"title": "Auto unlock", "conditions": {"all": [words], "any": []},
                "actions": [{"field": "current_tags", "value": "idv_do_unlock"}]}  # fmt: skip
        api.post("/triggers", json={"trigger": rule}).raise_for_status()
    req = DoctorRequest(desk=DESK, config=config, public_url=inbox.server.url, admin=admin)
    warned = {c.name.split(" (")[0]: c for c in zendesk_doctor(req) if c.status is not Status.OK}
    assert set(warned) == {"ticket field 'Wish'", "trigger 'Auto unlock'"}
    assert "idv_do_reset_mfa" in warned["ticket field 'Wish'"].detail
    assert all(c.status is Status.WARN and c.fix for c in warned.values())


def test_zendesk_the_poll_finds_requests_whatever_the_marker_and_the_scan_leaves_them(
    zendesk: tuple[ZendeskDeskConfig, ZendeskDriver],
) -> None:
    config, driver = zendesk
    desk = ZendeskConnector(DESK, config, 5.0)

    def ticket(tags: list[str], status: str = "open") -> str:
        made = driver.create_ticket("Jane Employee", None, "Help")
        body = {"ticket": {"status": status, "additional_tags": tags}}
        driver.api.put(f"/tickets/{made}.json", json=body).raise_for_status()
        return made

    after_pass = ticket(["idv_verified", "idv_do_unlock"])
    held = ticket(["idv_review", "idv_do_reset_mfa"])
    solved = ticket(["idv_verified", "idv_do_unlock"], status="solved")
    ticket(["idv_verified"])
    found, cursor = desk.find_flagged(None)
    assert sorted(found) == sorted([after_pass, held]) and cursor is None
    assert solved not in found
    assert desk.find_flagged(None, gated=True)[0] == [held]  # the gate, not the request
    desk.close()


def test_zendesk_two_requests_at_once_are_logged_by_their_known_names_only(
    zendesk: tuple[ZendeskDeskConfig, ZendeskDriver],
) -> None:
    config, driver = zendesk
    desk = ZendeskConnector(DESK, config, 5.0)
    ticket_id = driver.create_ticket("Jane Employee", None, "Help")
    tags = ["idv_do_unlock", "idv_do_reset_mfa", "idv_do_jane_at_example_com"]
    driver.api.put(f"/tickets/{ticket_id}/tags.json", json={"tags": tags}).raise_for_status()
    with structlog.testing.capture_logs() as logs:
        ticket = desk.get_ticket(ticket_id)
    assert ticket is not None and ticket.action_request is None
    [line] = [entry for entry in logs if entry["event"] == "action_request_ambiguous"]
    assert line["actions"] == ["reset_mfa", "unlock"] and line["asked"] == 3
    assert "jane" not in json.dumps(line)  # a tag is anyone's text: never logged
    desk.close()


def test_the_zendesk_simulator_pages_a_tickets_audits_by_cursor_and_by_offset(
    zendesk: tuple[ZendeskDeskConfig, ZendeskDriver],
) -> None:
    """As Zendesk's reference has it for ``GET /tickets/{id}/audits``: cursor pages
    (``page[size]``, ``meta.has_more``, ``links.next``) or offset pages (``next_page``)."""
    _, driver = zendesk
    ticket_id = driver.create_ticket("Jane Employee", None, "Help")
    for n in range(3):
        driver.comment(ticket_id, f"note {n}")
    first = driver.api.get(f"/tickets/{ticket_id}/audits.json", params={"page[size]": 2}).json()
    assert len(first["audits"]) == 2 and first["meta"]["has_more"] is True
    rest = driver.api.get(first["links"]["next"]).json()
    assert len(rest["audits"]) == 2 and rest["meta"]["has_more"] is False
    ids = [a["id"] for a in first["audits"] + rest["audits"]]
    assert ids == sorted(ids)  # oldest first
    offset = driver.api.get(f"/tickets/{ticket_id}/audits.json", params={"per_page": 3}).json()
    assert [a["id"] for a in offset["audits"]] == ids[:3] and offset["next_page"]


def test_servicenow_the_update_set_imports_the_action_records_and_they_fire(
    servicenow_server: Server, inbox: Inbox
) -> None:
    """The other way to install: the update set an admin imports (upload, preview, commit), the
    secret property (never in the file) then made by hand. The action UI action it carries
    pushes as --apply's does."""
    admin = (SN.admin_username, SN.admin_password)
    with httpx.Client(base_url=servicenow_server.url, auth=admin, timeout=10) as sim:
        sim.post("/_sandbox/reset").raise_for_status()
        config = ServiceNowDeskConfig.model_validate(
            {"kind": "servicenow", "base_url": servicenow_server.url, "username": SN.username,
             "password": SN.password, "webhook_secret": SN_SECRET}
        )  # fmt: skip
        xml = render(DESK, config, inbox.server.url)
        uploaded = sim.post("/sys_upload.do", files={"attachFile": ("d.xml", xml, "text/xml")})
        set_id = uploaded.json()["result"]["sys_id"]
        preview = sim.post(f"/sys_remote_update_set/{set_id}/preview").json()["result"]
        assert preview["problems"] == []
        sim.post(f"/sys_remote_update_set/{set_id}/commit").raise_for_status()
        secret = {"name": secret_property("incident"), "type": "password2", "value": SN_SECRET}
        sim.post("/api/now/table/sys_properties", json=secret).raise_for_status()
        with inbox.lock:
            inbox.pushes.clear()
        driver = ServiceNowDriver(sim, SN)
        ticket_id = driver.create_ticket("Jane Employee", "jane@acme.test", "Reset my MFA")
        sim.patch(f"/api/now/table/incident/{ticket_id}",
                  json={config.status_field: "verified"}).raise_for_status()  # fmt: skip
        driver.ask_action(ticket_id, "revoke_sessions")
        assert servicenow_pushed(inbox, 1) == [ticket_id]
        assert driver.raw(ticket_id)["record"][config.action_field] == "revoke_sessions"
        driver.close()


def test_zendesk_setup_keeps_an_admins_narrowing_of_the_action_trigger_and_repairs_the_rest(
    zendesk: tuple[ZendeskDeskConfig, ZendeskDriver], inbox: Inbox
) -> None:
    config, _ = zendesk
    admin = AdminCredential(ZD.admin_email, SecretStr(ZD.api_token))
    title = objects.action_trigger_title(DESK)
    group = {"field": "group_id", "operator": "is", "value": "360001"}
    undo = {"field": "remove_tags", "value": "idv_do_unlock"}
    with client(config, admin, 5.0) as api:
        found = find_trigger(api, config, title)
        assert found is not None
        # The admin narrows it to one group, drops the guard and adds an action undoing requests.
        every = [c for c in found["conditions"]["all"] if c["operator"] != "not_includes"]
        edit = {"conditions": {"all": [*every, group], "any": []},
                "actions": [*found["actions"], undo]}  # fmt: skip
        api.put(f"/triggers/{found['id']}", json={"trigger": edit}).raise_for_status()
    req = DoctorRequest(desk=DESK, config=config, public_url=inbox.server.url, admin=admin)
    bad = {c.name for c in zendesk_doctor(req) if c.status is not Status.OK}
    assert bad == {
        "action trigger fires once per request",
        "action trigger leaves the request alone",
    }

    [line] = [c for c in zendesk_setup(zendesk_request(config, inbox)) if c.name == title]
    assert line.action is Action.UPDATE
    assert (
        "group_id is 360001" in line.detail and "removed remove_tags idv_do_unlock" in line.detail
    )
    with client(config, admin, 5.0) as api:
        repaired = find_trigger(api, config, title)
    assert repaired is not None
    assert group in repaired["conditions"]["all"] and undo not in repaired["actions"]
    assert objects.action_trigger_problems(repaired, config, None) == {}
    [again] = [c for c in zendesk_setup(zendesk_request(config, inbox)) if c.name == title]
    assert again.action is Action.UNCHANGED and "group_id is 360001" in again.detail


def test_servicenow_only_the_verification_roles_may_ask_for_an_action(
    servicenow_server: Server, inbox: Inbox
) -> None:
    """The action field's write ACL and the UI actions' roles: an agent without one of the
    desk's ``verification_roles`` can neither press the button nor write the field."""
    admin = (SN.admin_username, SN.admin_password)
    with httpx.Client(base_url=f"{servicenow_server.url}/api/now/table", auth=admin) as api:
        httpx.post(f"{servicenow_server.url}/_sandbox/reset").raise_for_status()
        role = api.post("/sys_user_role", json={"name": "x_acme.idv"}).json()["result"]["sys_id"]
        config = ServiceNowDeskConfig.model_validate(
            {"kind": "servicenow", "base_url": servicenow_server.url, "username": SN.username,
             "password": SN.password, "webhook_secret": SN_SECRET,
             "verification_roles": ["x_acme.idv"]}
        )  # fmt: skip
        servicenow_setup(servicenow_request(config, inbox))
        with inbox.lock:
            inbox.pushes.clear()
        sim = httpx.Client(base_url=servicenow_server.url, timeout=10)
        driver = ServiceNowDriver(sim, SN)
        ticket_id = verified_record(config, driver)
        with pytest.raises(httpx.HTTPStatusError) as refused:  # it.agent holds itil only
            driver.ask_action(ticket_id, "reset_mfa")
        assert refused.value.response.status_code == 403
        agent = (SN.agent_username, SN.agent_password)
        written = driver.api.patch(f"/incident/{ticket_id}", auth=agent,
                                   json={config.action_field: "reset_mfa"})  # fmt: skip
        assert written.status_code == 200  # the platform drops a field the ACL refuses
        assert driver.raw(ticket_id)["record"].get(config.action_field, "") == ""

        [user] = api.get("/sys_user", params={"sysparm_query": f"user_name={SN.agent_username}"}
                         ).json()["result"]  # fmt: skip
        api.post("/sys_user_has_role", json={"user": user["sys_id"], "role": role}
                 ).raise_for_status()  # fmt: skip
        driver.ask_action(ticket_id, "reset_mfa")
        assert servicenow_pushed(inbox, 1) == [ticket_id]
        driver.close()
        sim.close()
