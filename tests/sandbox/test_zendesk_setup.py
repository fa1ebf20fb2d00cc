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
from pydantic import SecretStr
from redis import Redis

from config.settings import Settings
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
from connectors.zendesk.setup import setup
from sandbox.common import Server, serve
from sandbox.zendesk import ZendeskSimConfig, create_app
from tests.conftest import TEST_REDIS_URL, settings_data
from worker import audit, cli
from worker.audit_chain import Chain, verify

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
    assert len(admin_api.get("/triggers").json()["triggers"]) == 1


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
        (_trigger_off, "trigger is active", "writes the whole trigger back",
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
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    # Deskgate started with the env file: nothing left to do.
    monkeypatch.setenv(objects.secret_env(DESK), FIRST_SECRET)
    assert cli.main([*argv, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["unchanged"] * 7


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
