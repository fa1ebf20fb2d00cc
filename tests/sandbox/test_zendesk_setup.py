"""``deskgate setup`` and ``deskgate doctor`` for Zendesk, against the Zendesk simulator over real
HTTP, from an empty account: idempotence, dry run, repair after an admin's edit, and the
misconfigurations doctor must name with their fix."""

from __future__ import annotations

import getpass
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, request
from pydantic import SecretStr
from redis import Redis

from config.settings import Settings
from connectors.http import Fatal
from connectors.provisioning import (
    Action,
    AdminCredential,
    Change,
    Check,
    DoctorRequest,
    ProvisioningError,
    SetupRequest,
    Status,
)
from connectors.registry import SETTINGS
from connectors.zendesk import objects
from connectors.zendesk.config import ZendeskDeskConfig
from connectors.zendesk.doctor import doctor
from connectors.zendesk.setup import client, listed, setup
from sandbox.common import Server, serve
from sandbox.zendesk import ZendeskSimConfig, create_app
from tests.conftest import TEST_REDIS_URL, settings_data
from worker import audit
from worker.audit.chain import Chain, verify
from worker.commands import cli

TOKEN = ZendeskSimConfig.api_token
ADMIN = AdminCredential("admin@acme.test", SecretStr(TOKEN))
FIRST_SECRET = ZendeskSimConfig.webhook_secret  # what the simulator's first webhook signs with
PUBLIC = "https://deskgate.example.test"
DESK = "acme_zendesk"
TRIGGERS = {"idv_mfa_reset": "MFA reset", "idv_account_unlock": "account unlock"}


@pytest.fixture(scope="module")
def sim() -> Iterator[Server]:
    server = serve(create_app(ZendeskSimConfig()))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def empty(sim: Server) -> None:
    """An account nobody set up: no webhook, no trigger, no macro, On-hold enabled."""
    httpx.post(f"{sim.url}/_sandbox/reset", json={"account": True}).raise_for_status()


@pytest.fixture
def admin_api(sim: Server) -> Iterator[httpx.Client]:
    auth = (f"{ADMIN.user}/token", TOKEN)
    with httpx.Client(base_url=f"{sim.url}/api/v2", auth=auth, trust_env=False) as client:
        yield client


def desk(sim: Server, **fields: Any) -> ZendeskDeskConfig:
    values: dict[str, Any] = {
        "kind": "zendesk",
        "base_url": sim.url,
        "email": "agent@acme.test",
        "api_token": TOKEN,
        "webhook_secret": FIRST_SECRET,
        "triggers": TRIGGERS,
        **fields,
    }
    return ZendeskDeskConfig(**values)


def run_setup(config: ZendeskDeskConfig, **fields: Any) -> list[Change]:
    return setup(SetupRequest(desk=DESK, config=config, public_url=PUBLIC, admin=ADMIN, **fields))


def run_doctor(config: ZendeskDeskConfig, admin: AdminCredential | None = ADMIN) -> list[Check]:
    return doctor(DoctorRequest(desk=DESK, config=config, public_url=PUBLIC, admin=admin))


def actions(changes: list[Change]) -> dict[tuple[str, str], Action]:
    return {(c.kind, c.name): c.action for c in changes}


def failures(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks if c.status is not Status.OK}


def trigger_of(admin_api: httpx.Client) -> dict[str, Any]:
    title = objects.trigger_title(DESK)
    found = admin_api.get("/triggers/search", params={"query": title}).json()["triggers"]
    [trigger] = [t for t in found if t["title"] == title]
    return dict(trigger)


def test_from_empty_setup_creates_everything_doctor_passes_and_a_second_run_changes_nothing(
    sim: Server, admin_api: httpx.Client
) -> None:
    config = desk(sim)
    first = run_setup(config)
    assert actions(first) == {
        ("webhook", objects.webhook_name(DESK)): Action.CREATE,
        # The simulator's first webhook signs with the secret this desk is configured with.
        ("signing secret", objects.secret_env(DESK)): Action.UNCHANGED,
        ("trigger category", "Deskgate"): Action.CREATE,
        ("trigger", objects.trigger_title(DESK)): Action.CREATE,
        ("macro", "Verify identity: MFA reset"): Action.CREATE,
        ("macro", "Verify identity: account unlock"): Action.CREATE,
        ("trigger", objects.action_trigger_title(DESK)): Action.CREATE,
        ("macro", "Deskgate: unlock the account"): Action.CREATE,
        ("macro", "Deskgate: reset MFA"): Action.CREATE,
        ("macro", "Deskgate: reset the password"): Action.CREATE,
        ("macro", "Deskgate: sign out everywhere"): Action.CREATE,
        ("status", "On-hold"): Action.UNCHANGED,
    }
    [webhook] = admin_api.get("/webhooks").json()["webhooks"]
    assert webhook["endpoint"] == f"{PUBLIC}/webhooks/zendesk"
    assert webhook["subscriptions"] == ["conditional_ticket_events"]
    trigger = trigger_of(admin_api)
    push = [webhook["id"], '{"ticket_id": "{{ticket.id}}"}']
    assert trigger["actions"] == [{"field": "notification_webhook", "value": push}]
    [category] = admin_api.get("/trigger_categories").json()["trigger_categories"]
    assert trigger["category_id"] == category["id"] and category["name"] == "Deskgate"

    checks = run_doctor(config)
    assert failures(checks) == {}
    assert {c.name for c in checks} >= {
        "credentials", "API user may edit the desk's tickets", "gate status", "webhook exists",
        "webhook points at public_url", "webhook is active", "signing secret is the configured one",
        "trigger exists", "trigger is active", "trigger cannot re-fire on Deskgate's writes",
        "trigger notifies Deskgate's webhook",
    }  # fmt: skip

    second = run_setup(config)
    assert set(actions(second).values()) == {Action.UNCHANGED}
    assert len(admin_api.get("/webhooks").json()["webhooks"]) == 1
    assert len(admin_api.get("/triggers").json()["triggers"]) == 2  # the flag's, the actions'


def test_dry_run_says_what_it_would_do_and_writes_nothing(
    sim: Server, admin_api: httpx.Client
) -> None:
    stored: list[str] = []

    def store(name: str, value: str) -> str:
        stored.append(name)
        return "nowhere"

    plan = run_setup(desk(sim, webhook_secret=None), dry_run=True, store_secret=store)  # fmt: skip
    assert actions(plan)[("trigger", objects.trigger_title(DESK))] is Action.CREATE
    assert actions(plan)[("signing secret", objects.secret_env(DESK))] is Action.WRITE
    assert admin_api.get("/webhooks").json()["webhooks"] == []
    assert admin_api.get("/triggers").json()["triggers"] == []
    assert admin_api.get("/macros").json()["macros"] == []
    assert stored == []


def test_an_admins_edit_of_the_trigger_is_named_by_doctor_and_repaired_by_setup(
    sim: Server, admin_api: httpx.Client
) -> None:
    """The edit people make: conditions sent alone (Zendesk then empties the actions), without
    the open-marker exclusion, so the trigger would fire on every update and notify nobody."""
    config = desk(sim)
    run_setup(config)
    trigger = trigger_of(admin_api)
    tag_only = [c for c in trigger["conditions"]["all"] if c["operator"] != "not_includes"]
    edit = {"trigger": {"conditions": {"all": tag_only, "any": []}}}
    admin_api.put(f"/triggers/{trigger['id']}", json=edit).raise_for_status()

    broken = failures(run_doctor(config))
    assert set(broken) == {
        "trigger cannot re-fire on Deskgate's writes",
        "trigger notifies Deskgate's webhook",
    }
    assert all(f"deskgate setup {DESK}" in c.fix for c in broken.values())
    assert "idv_pending idv_review" in broken["trigger cannot re-fire on Deskgate's writes"].detail

    repair = run_setup(config)
    assert actions(repair)[("trigger", objects.trigger_title(DESK))] is Action.UPDATE
    assert failures(run_doctor(config)) == {}
    assert set(actions(run_setup(config)).values()) == {Action.UNCHANGED}


Breakage = Callable[[httpx.Client, httpx.Client], None]


def _webhook_elsewhere(admin_api: httpx.Client, control: httpx.Client) -> None:
    [webhook] = admin_api.get("/webhooks").json()["webhooks"]
    body = {"webhook": {"endpoint": "https://old-host.example.test/webhooks/zendesk"}}
    admin_api.patch(f"/webhooks/{webhook['id']}", json=body).raise_for_status()


def _secret_reset(admin_api: httpx.Client, control: httpx.Client) -> None:
    [webhook] = admin_api.get("/webhooks").json()["webhooks"]
    admin_api.post(f"/webhooks/{webhook['id']}/signing_secret").raise_for_status()


def _trigger_off(admin_api: httpx.Client, control: httpx.Client) -> None:
    trigger = trigger_of(admin_api)
    off = {"trigger": {"active": False}}
    admin_api.put(f"/triggers/{trigger['id']}", json=off).raise_for_status()


def _hold_off(admin_api: httpx.Client, control: httpx.Client) -> None:
    control.put("/account", json={"hold_enabled": False}).raise_for_status()


def _agent_restricted(admin_api: httpx.Client, control: httpx.Client) -> None:
    me = httpx.get(
        admin_api.base_url.join("users/me"), auth=("agent@acme.test/token", TOKEN), trust_env=False
    ).json()["user"]
    body = {"user": {"ticket_restriction": "assigned"}}
    admin_api.put(f"/users/{me['id']}", json=body).raise_for_status()


@pytest.mark.parametrize(
    ("breakage", "failing", "fix_says", "setup_says"),
    [
        (_webhook_elsewhere, "webhook points at public_url", "points the webhook at",
         ("webhook", Action.UPDATE)),
        (_secret_reset, "signing secret is the configured one", "--env-file",
         ("signing secret", Action.WRITE)),
        (_trigger_off, "trigger is active", "repairs the trigger",
         ("trigger", Action.UPDATE)),
        (_hold_off, "gate status", 'gate_status = "pending"', ("status", Action.MANUAL)),
        (_agent_restricted, "API user may edit the desk's tickets", "access to all tickets",
         None),
    ],
    ids=["webhook endpoint", "signing secret", "trigger inactive", "on-hold off", "agent rights"],
)  # fmt: skip
def test_doctor_names_each_misconfiguration_with_its_fix_and_setup_repairs_its_own(
    sim: Server,
    admin_api: httpx.Client,
    breakage: Breakage,
    failing: str,
    fix_says: str,
    setup_says: tuple[str, Action] | None,
) -> None:
    config = desk(sim)
    run_setup(config)
    with httpx.Client(base_url=f"{sim.url}/_sandbox", trust_env=False) as control:
        breakage(admin_api, control)
    broken = failures(run_doctor(config))
    assert list(broken) == [failing]
    assert broken[failing].status is Status.FAIL
    assert fix_says in broken[failing].fix

    stored: dict[str, str] = {}
    changes = run_setup(config, store_secret=lambda name, value: stored.setdefault(name, value))
    changed = {c.kind: c.action for c in changes if c.action is not Action.UNCHANGED}
    assert changed == (dict([setup_says]) if setup_says else {})
    if setup_says and setup_says[1] is not Action.MANUAL:
        # Repaired (with the new secret in Deskgate's config, where setup stored it).
        secret = stored.get(objects.secret_env(DESK), FIRST_SECRET)
        assert failures(run_doctor(desk(sim, webhook_secret=secret))) == {}


def test_doctor_with_a_wrong_token_stops_at_the_credentials(sim: Server) -> None:
    checks = run_doctor(desk(sim, api_token="not-the-token"))
    assert [(c.name, c.status) for c in checks] == [("credentials", Status.FAIL)]
    assert "API_TOKEN" in checks[0].fix


def test_doctor_without_an_admin_checks_the_rest_and_says_what_it_skipped(sim: Server) -> None:
    config = desk(sim)
    run_setup(config)
    checks = run_doctor(config, admin=None)
    assert [c.name for c in checks if c.status is Status.WARN] == ["webhook"]
    assert not [c for c in checks if c.status is Status.FAIL]


def test_setup_refuses_an_agent_credential(sim: Server, admin_api: httpx.Client) -> None:
    agent = AdminCredential("agent@acme.test", SecretStr(TOKEN))
    request = SetupRequest(desk=DESK, config=desk(sim), public_url=PUBLIC, admin=agent)
    with pytest.raises(ProvisioningError, match="not an admin"):
        setup(request)
    assert admin_api.get("/webhooks").json()["webhooks"] == []


def test_a_secret_not_configured_is_stored_where_told_and_never_shown(sim: Server) -> None:
    stored: dict[str, str] = {}

    def store(name: str, value: str) -> str:
        stored[name] = value
        return "the test's store"

    changes = run_setup(desk(sim, webhook_secret=None), store_secret=store)
    assert stored == {objects.secret_env(DESK): FIRST_SECRET}
    [line] = [c for c in changes if c.kind == "signing secret"]
    assert line.action is Action.WRITE and FIRST_SECRET not in line.detail
    # Rotation: a new secret, stored; the old one no longer matches.
    rotated = run_setup(desk(sim), store_secret=store, options={"rotate_secret": "1"})
    assert stored[objects.secret_env(DESK)] != FIRST_SECRET
    assert [c.action for c in rotated if c.kind == "signing secret"] == [Action.WRITE]


# -- the command -----------------------------------------------------------------------------


@pytest.fixture
def configured(
    sim: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Deskgate's config for the simulator, as the command loads it (file + environment)."""

    def write(public_url: str | None = PUBLIC) -> Settings:
        data = settings_data()
        incode = data["incode"]
        lines = [f'redis_url = "{TEST_REDIS_URL}"']  # where setup records its audit events
        lines += [f'public_url = "{public_url}"'] if public_url else []
        lines += ["[incode]"] + [
            f'{key} = "{incode[key]}"'
            for key in ("api_url", "auth_url", "integration_reference", "client_id",
                        "executive_email")
        ]  # fmt: skip
        lines += [f"[desks.{DESK}]", 'kind = "zendesk"', f'base_url = "{sim.url}"',
                  'email = "agent@acme.test"', f"[desks.{DESK}.triggers]",
                  *(f'{t} = "{r}"' for t, r in TRIGGERS.items())]  # fmt: skip
        path = tmp_path / "deskgate.toml"
        path.write_text("\n".join(lines) + "\n")
        env = {
            "DESKGATE_CONFIG": str(path),
            "DESKGATE_NOTE_SECRET": data["note_secret"],
            "DESKGATE_INCODE__CLIENT_SECRET": incode["client_secret"],
            "DESKGATE_INCODE__API_KEY": incode["api_key"],
            "DESKGATE_INCODE__EXECUTIVE_PASSWORD": incode["executive_password"],
            "DESKGATE_INCODE__WEBHOOK_SECRET": incode["webhook_secret"],
            f"DESKGATE_DESKS__{DESK.upper()}__API_TOKEN": TOKEN,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return SETTINGS()

    return write


def test_the_command_writes_the_secret_into_the_env_file_in_place_and_never_prints_it(
    configured: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configured()
    monkeypatch.setenv("DESKGATE_ADMIN_SECRET", TOKEN)
    env_file = tmp_path / "deskgate.env"
    env_file.write_text(f"# ours\nOTHER=1\n{objects.secret_env(DESK)}=old-value-old-value\n")
    argv = ["setup", DESK, "--admin-user", ADMIN.user, "--env-file", str(env_file)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert FIRST_SECRET not in out and TOKEN not in out
    assert "create           trigger" in out and "write            signing secret" in out
    assert "--rotate-secret" in out  # how to rotate
    assert env_file.read_text() == f"# ours\nOTHER=1\n{objects.secret_env(DESK)}={FIRST_SECRET}\n"
    # The file's owner and group keep their access (write_text made it 0644); other users lose it.
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640

    # Deskgate started with the env file: nothing left to do.
    monkeypatch.setenv(objects.secret_env(DESK), FIRST_SECRET)
    assert cli.main([*argv, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["unchanged"] * 12


def test_a_setup_run_and_a_rotation_are_audit_events_and_a_dry_run_is_not(
    configured: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis: Redis[str],
) -> None:
    settings = configured()
    monkeypatch.setenv("DESKGATE_ADMIN_SECRET", TOKEN)
    argv = ["setup", DESK, "--admin-user", ADMIN.user, "--env-file", str(tmp_path / "d.env")]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--dry-run"]) == 0  # plans only: no event
    assert cli.main([*argv, "--rotate-secret"]) == 0
    found = [audit.event_of(f) for _, f in redis.xrange(audit.stream_key(settings.key_prefix))]
    assert [e["event"] for e in found] == ["setup.applied", "setup.applied", "secret.rotated"]
    first, again, rotated = found
    assert {e["desk"] for e in found} == {DESK}
    assert {e["actor"] for e in found} == {getpass.getuser()}
    assert "create trigger 'Deskgate: identity verification" in first["detail"]
    assert "write signing secret 'DESKGATE_DESKS__" in first["detail"]
    assert "create" not in again["detail"] and FIRST_SECRET not in str(found)
    assert "reset" in rotated["detail"] and TOKEN not in str(found)
    assert verify(redis, settings.key_prefix, Chain.of(settings)).broken is None


@pytest.mark.parametrize(
    ("argv", "admin_secret", "public_url", "says"),
    [
        (["setup", "nowhere"], TOKEN, PUBLIC, "no desk 'nowhere'"),
        (["setup", DESK], None, PUBLIC, "DESKGATE_ADMIN_SECRET"),
        (["setup", DESK], TOKEN, None, "public_url"),
        (["setup", DESK, "--rotate-secret"], TOKEN, PUBLIC, "--rotate-secret needs --env-file"),
    ],
    ids=["unknown desk", "no admin secret", "no public_url", "rotation with nowhere to put it"],
)
def test_the_command_refuses_with_exit_2_and_a_reason(
    configured: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    admin_secret: str | None,
    public_url: str | None,
    says: str,
) -> None:
    configured(public_url=public_url)
    if admin_secret:
        monkeypatch.setenv("DESKGATE_ADMIN_SECRET", admin_secret)
    assert cli.main([*argv, "--admin-user", ADMIN.user]) == 2
    assert says in capsys.readouterr().err


def test_setup_incode_prints_the_dashboard_steps_with_this_deployments_values(
    configured: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = configured()
    assert cli.main(["setup", "incode"]) == 0
    out = capsys.readouterr().out
    assert f"{PUBLIC}/webhooks/incode" in out
    assert "x-incode-secret" in out and "DESKGATE_INCODE__WEBHOOK_SECRET" in out
    assert settings.incode.webhook_secret.get_secret_value() not in out
    assert all(line.startswith("manual") for line in out.splitlines())


def test_setup_finds_its_webhook_past_the_first_page_and_makes_no_second_one(
    sim: Server, admin_api: httpx.Client
) -> None:
    """Webhook names are not unique and the list pages by 100: 100 older webhooks whose names
    contain Deskgate's come first, and the second run must still find the one setup made."""
    body = {"status": "active", "endpoint": "https://old.example.test/hook", "http_method": "POST",
            "request_format": "json", "subscriptions": ["conditional_ticket_events"]}  # fmt: skip
    for i in range(100):
        name = f"{objects.webhook_name(DESK)} (old {i})"
        admin_api.post("/webhooks", json={"webhook": {**body, "name": name}}).raise_for_status()
    config = desk(sim, webhook_secret=None)
    first = run_setup(config)
    assert actions(first)[("webhook", objects.webhook_name(DESK))] is Action.CREATE
    again = run_setup(config)
    assert actions(again)[("webhook", objects.webhook_name(DESK))] is Action.UNCHANGED
    named = [w for w in _all_webhooks(admin_api) if w["name"] == objects.webhook_name(DESK)]
    assert len(named) == 1


def _all_webhooks(admin_api: httpx.Client) -> list[dict[str, Any]]:
    page = admin_api.get("/webhooks").json()
    found: list[dict[str, Any]] = page["webhooks"]
    while page["meta"]["has_more"]:
        page = admin_api.get(page["links"]["next"]).json()
        found += page["webhooks"]
    return found


def test_setup_and_doctor_read_every_page_of_categories_triggers_and_macros(
    sim: Server, admin_api: httpx.Client
) -> None:
    """An account with more categories, look-alike triggers and look-alike macros than one page
    holds (100): each of Deskgate's objects sits on a second page, and a second run must find
    them there instead of making a second "Deskgate" category, trigger or macro."""
    hook = {"name": "Other", "status": "active", "endpoint": "https://other.example.test/hook",
            "http_method": "POST", "request_format": "json",
            "subscriptions": ["conditional_ticket_events"]}  # fmt: skip
    other = admin_api.post("/webhooks", json={"webhook": hook}).json()["webhook"]["id"]
    for i in range(100):
        category = {"trigger_category": {"name": f"Team {i}", "position": i}}
        admin_api.post("/trigger_categories", json=category).raise_for_status()
        new = {"field": "status", "operator": "is", "value": "new"}
        push = {"field": "notification_webhook", "value": [other, "{}"]}
        trigger = {"title": f"{objects.trigger_title(DESK)} (old {i})",
                   "conditions": {"all": [new]}, "actions": [push]}  # fmt: skip
        admin_api.post("/triggers", json={"trigger": trigger}).raise_for_status()
        for reason in TRIGGERS.values():
            macro = {"title": f"{objects.macro_title(reason)} (old {i})",
                     "actions": [{"field": "current_tags", "value": "other"}]}  # fmt: skip
            admin_api.post("/macros", json={"macro": macro}).raise_for_status()
    stored: dict[str, str] = {}  # the "Other" webhook took the simulator's first secret
    run_setup(desk(sim, webhook_secret=None), store_secret=stored.setdefault)
    config = desk(sim, webhook_secret=stored[objects.secret_env(DESK)])
    again = run_setup(config)
    assert set(actions(again).values()) == {Action.UNCHANGED}
    assert failures(run_doctor(config)) == {}
    names = [c["name"] for c in _every(admin_api, "/trigger_categories", "trigger_categories")]
    assert names.count("Deskgate") == 1 and len(names) == 101
    titles = [t["title"] for t in _every(admin_api, "/triggers", "triggers")]
    assert titles.count(objects.trigger_title(DESK)) == 1
    macros = [m["title"] for m in _every(admin_api, "/macros", "macros")]
    assert all(macros.count(objects.macro_title(r)) == 1 for r in TRIGGERS.values())


def test_the_simulator_pages_listings_as_zendesk_documents(admin_api: httpx.Client) -> None:
    for i in range(150):
        body = {"trigger_category": {"name": f"Team {i}", "position": i}}
        admin_api.post("/trigger_categories", json=body).raise_for_status()
    # Offset pagination by default: 100 a page, then next_page.
    first = admin_api.get("/trigger_categories").json()
    assert len(first["trigger_categories"]) == 100 and first["count"] == 150
    second = admin_api.get(first["next_page"]).json()
    assert len(second["trigger_categories"]) == 50 and second["next_page"] is None
    # Cursor pagination with page[size], capped at 100.
    page = admin_api.get("/trigger_categories", params={"page[size]": "500"}).json()
    assert len(page["trigger_categories"]) == 100 and page["meta"]["has_more"]
    rest = admin_api.get(page["links"]["next"]).json()
    assert rest["trigger_categories"][0]["name"] == "Team 100"
    assert not rest["meta"]["has_more"] and rest["links"]["next"] is None
    # The searches page by offset only: a cursor is refused.
    refused = admin_api.get("/macros/search", params={"query": "x", "page[size]": "10"})
    assert refused.status_code == 400
    # Ticket fields: every one without page[size] (system fields first), by cursor with it.
    fields = admin_api.get("/ticket_fields").json()
    assert fields["ticket_fields"][0]["type"] == "subject" and fields["next_page"] is None
    cursor = admin_api.get("/ticket_fields", params={"page[size]": "2"}).json()
    assert len(cursor["ticket_fields"]) == 2 and cursor["meta"]["has_more"]
    # Automations need a time condition, as Zendesk requires.
    is_open = {"field": "status", "operator": "is", "value": "open"}
    pend = {"field": "status", "value": "pending"}
    untimed = {"title": "x", "conditions": {"all": [is_open]}, "actions": [pend]}
    assert admin_api.post("/automations", json={"automation": untimed}).status_code == 422


def _every(admin_api: httpx.Client, path: str, key: str) -> list[dict[str, Any]]:
    page = admin_api.get(path).json()
    found: list[dict[str, Any]] = page[key]
    while page["next_page"]:
        page = admin_api.get(page["next_page"]).json()
        found += page[key]
    return found


def test_setup_keeps_and_reports_what_an_admin_added_to_the_trigger_and_still_repairs_it(
    sim: Server, admin_api: httpx.Client
) -> None:
    """An admin narrows Deskgate's trigger (a group and a brand, one more excluded tag, an
    earlier status): every later run keeps all of it and says so. When the same admin also
    breaks it (the open-marker exclusion gone, an action removing the flag), setup repairs
    that and still keeps the restrictions."""
    config = desk(sim)
    run_setup(config)
    trigger = trigger_of(admin_api)
    group = {"field": "group_id", "operator": "is", "value": "360001"}
    brand = {"field": "brand_id", "operator": "is_not", "value": "42"}
    every = [dict(c) for c in trigger["conditions"]["all"]]
    for c in every:
        if c["operator"] == "not_includes":
            c["value"] += " vip_hold"
        if c["field"] == "status":
            c["value"] = "hold"
    only_mfa = {"field": "current_tags", "operator": "includes", "value": "idv_mfa_reset"}
    hardened = {"all": [*every, group, only_mfa], "any": [brand]}
    edit = {"trigger": {"conditions": hardened, "actions": trigger["actions"]}}
    admin_api.put(f"/triggers/{trigger['id']}", json=edit).raise_for_status()

    for _ in range(2):
        [line] = [c for c in run_setup(config) if c.name == objects.trigger_title(DESK)]
        assert line.action is Action.UNCHANGED
        for kept in ("group_id is 360001", "brand_id is_not 42", "vip_hold", "less than hold",
                     "current_tags includes idv_mfa_reset"):  # fmt: skip
            assert kept in line.detail
    after = trigger_of(admin_api)
    assert group in after["conditions"]["all"] and after["conditions"]["any"] == [brand]
    assert only_mfa in after["conditions"]["all"]
    assert {"field": "status", "operator": "less_than", "value": "hold"} in after["conditions"][
        "all"
    ]
    checks = run_doctor(config)
    assert failures(checks) == {}
    [restricted] = [c for c in checks if c.name == "trigger restrictions an admin added"]
    assert "group_id is 360001" in restricted.detail and "poller" in restricted.detail

    weakened = [c for c in after["conditions"]["all"] if c["operator"] != "not_includes"]
    unflag = {"field": "remove_tags", "value": "idv_mfa_reset"}
    edit = {"trigger": {"conditions": {"all": weakened, "any": [brand]},
                        "actions": [*after["actions"], unflag]}}  # fmt: skip
    admin_api.put(f"/triggers/{trigger['id']}", json=edit).raise_for_status()
    assert set(failures(run_doctor(config))) == {
        "trigger cannot re-fire on Deskgate's writes",
        "trigger leaves tags and status alone",
    }
    [line] = [c for c in run_setup(config) if c.name == objects.trigger_title(DESK)]
    assert line.action is Action.UPDATE
    assert (
        "removed remove_tags idv_mfa_reset" in line.detail and "group_id is 360001" in line.detail
    )
    repaired = trigger_of(admin_api)
    assert group in repaired["conditions"]["all"] and repaired["conditions"]["any"] == [brand]
    assert unflag not in repaired["actions"]
    assert failures(run_doctor(config)) == {}
    assert [c.action for c in run_setup(config) if c.name == objects.trigger_title(DESK)] == [
        Action.UNCHANGED
    ]


def test_setup_keeps_an_admins_additions_to_a_macro_and_drops_only_an_unflag(
    sim: Server, admin_api: httpx.Client
) -> None:
    config = desk(sim)
    run_setup(config)
    title = objects.macro_title("MFA reset")
    [macro] = admin_api.get("/macros/search", params={"query": title}).json()["macros"]
    note = {"field": "comment_value", "value": "Verifying your identity."}
    restriction = {"type": "Group", "id": 360001, "ids": [360001]}
    edit = {"macro": {"actions": [*macro["actions"], note], "restriction": restriction}}
    admin_api.put(f"/macros/{macro['id']}", json=edit).raise_for_status()

    [line] = [c for c in run_setup(config) if c.name == title]
    assert line.action is Action.UNCHANGED
    assert "comment_value" in line.detail and "Group 360001" in line.detail
    assert not [c for c in run_doctor(config) if c.status is not Status.OK]

    unflag = {"field": "remove_tags", "value": "idv_mfa_reset"}
    edit = {"macro": {"actions": [note, unflag]}}
    admin_api.put(f"/macros/{macro['id']}", json=edit).raise_for_status()
    assert f"macro {title!r}" in failures(run_doctor(config))
    [line] = [c for c in run_setup(config) if c.name == title]
    assert line.action is Action.UPDATE and "removed remove_tags idv_mfa_reset" in line.detail
    after = admin_api.get(f"/macros/{macro['id']}").json()["macro"]
    assert after["actions"] == [{"field": "current_tags", "value": "idv_mfa_reset"}, note]
    assert after["restriction"] == restriction


def test_doctor_warns_where_callers_can_flag_their_own_ticket(
    sim: Server, admin_api: httpx.Client
) -> None:
    """End-user-editable fields that set a trigger tag, and triggers or automations adding one
    on what the requester wrote or chose, are warned about with the fix; the same objects on
    what only agents decide are not."""
    config = desk(sim)
    run_setup(config)

    def field(**body: Any) -> dict[str, Any]:
        made = admin_api.post("/ticket_fields", json={"ticket_field": body})
        made.raise_for_status()
        return dict(made.json()["ticket_field"])

    def rule(kind: str, title: str, conditions: list[dict[str, str]], tags: str) -> None:
        body = {"title": title, "conditions": {"all": conditions, "any": []},
                "actions": [{"field": "current_tags" if kind == "trigger" else "set_tags",
                             "value": tags}]}  # fmt: skip
        admin_api.post(f"/{kind}s", json={kind: body}).raise_for_status()

    options = [{"name": "MFA reset", "value": "idv_mfa_reset"}, {"name": "Other", "value": "x"}]
    portal = {"visible_in_portal": True, "editable_in_portal": True}
    reason = field(type="tagger", title="Reason", custom_field_options=options, **portal)
    field(type="checkbox", title="Unlock (agents)", tag="idv_account_unlock")
    field(type="checkbox", title="VIP", tag="vip", **portal)
    rule("trigger", "Auto MFA", [{"field": "comment_includes_word", "operator": "includes",
                                  "value": "mfa"}], "idv_mfa_reset")  # fmt: skip
    rule("trigger", "Reason to tag", [{"field": f"custom_fields_{reason['id']}", "operator": "is",
                                       "value": "x"}], "idv_account_unlock")  # fmt: skip
    rule("trigger", "Security group", [{"field": "group_id", "operator": "is",
                                        "value": "360001"}], "idv_mfa_reset")  # fmt: skip
    later = {"field": "hours_since_created", "operator": "greater_than", "value": "1"}
    by_mail = {"field": "via_id", "operator": "is", "value": "4"}
    rule("automation", "Mail unlock", [later, by_mail], "idv_account_unlock")
    rule("automation", "Stale VIP", [later], "idv_account_unlock")

    warned = failures(run_doctor(config))
    assert {name.split(" (")[0] for name in warned} == {
        "ticket field 'Reason'", "trigger 'Auto MFA'", "trigger 'Reason to tag'",
        "automation 'Mail unlock'",
    }  # fmt: skip
    assert all(c.status is Status.WARN and c.fix for c in warned.values())
    [by_field] = [c for n, c in warned.items() if n.startswith("ticket field")]
    assert "idv_mfa_reset" in by_field.detail and "Permissions" in by_field.fix
    [by_text] = [c for n, c in warned.items() if "Auto MFA" in n]
    assert "comment_includes_word" in by_text.detail

    # The simulator runs such a trigger as Zendesk does: the caller's words flag the ticket.
    ticket = {"subject": "help", "comment": {"body": "please reset my MFA"},
              "requester": {"name": "Eve", "email": "eve@example.test"}}  # fmt: skip
    made = admin_api.post("/tickets", json={"ticket": ticket}).json()["ticket"]
    assert "idv_mfa_reset" in made["tags"]


def test_doctor_finds_no_self_flagging_on_a_clean_account(sim: Server) -> None:
    config = desk(sim)
    run_setup(config)
    [line] = [c for c in run_doctor(config) if c.name == "callers cannot flag themselves"]
    assert line.status is Status.OK


def test_a_next_page_outside_the_account_is_never_followed_with_the_admins_token() -> None:
    """Both page shapes (offset ``next_page``, cursor ``links.next``) naming another host: setup
    stops before sending the admin's credentials there."""
    seen: list[str | None] = []
    thief = Flask("thief")

    @thief.route("/<path:anything>")
    def steal(anything: str) -> dict[str, Any]:
        seen.append(request.headers.get("Authorization"))
        return {"macros": [], "trigger_categories": [], "next_page": None}

    stolen = serve(thief)
    hostile = Flask("zendesk")

    @hostile.get("/api/v2/macros/search")
    def macros() -> dict[str, Any]:
        return {"macros": [], "next_page": f"{stolen.url}/api/v2/macros/search?page=2"}

    @hostile.get("/api/v2/trigger_categories")
    def categories() -> dict[str, Any]:
        links = {"next": f"{stolen.url}/api/v2/trigger_categories?page[after]=x"}
        return {"trigger_categories": [], "meta": {"has_more": True}, "links": links}

    zendesk = serve(hostile)
    config = desk(zendesk)
    with client(config, ADMIN, 5.0) as api:
        for path, key in (
            ("/macros/search", "macros"),
            ("/trigger_categories", "trigger_categories"),
        ):
            with pytest.raises(Fatal, match="points outside the account"):
                listed(api, config, path, key)
    assert seen == []
    zendesk.stop()
    stolen.stop()
