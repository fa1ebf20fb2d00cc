"""A bad configuration stops start-up with a message that names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ConfigError
from connectors.registry import load_settings
from connectors.zendesk.config import ZendeskDeskConfig
from tests.conftest import settings_data
from worker.commands import cli


def test_given_a_complete_config_then_it_loads(tmp_path: Path) -> None:
    settings = load_settings(**settings_data())
    desk = settings.desks["acme_zendesk"]
    assert isinstance(desk, ZendeskDeskConfig) and desk.kind == "zendesk"
    assert desk.gate_status == "hold"
    assert settings.incode.webhook_secret_header == "x-incode-secret"
    assert "client-secret" not in repr(settings)  # SecretStr never prints


def test_given_a_missing_secret_then_the_error_names_the_field_and_its_variable() -> None:
    data = settings_data()
    del data["desks"]["acme_zendesk"]["api_token"]
    with pytest.raises(ConfigError) as err:
        load_settings(**data)
    assert "desks.acme_zendesk.api_token" in str(err.value)
    assert (
        "DESKGATE_DESKS__ACME_ZENDESK__API_TOKEN, or DESKGATE_DESKS__ACME_ZENDESK__API_TOKEN_FILE"
        in str(err.value)
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"login_hint": "phone"}, "desks.acme_zendesk.login_hint"),
        ({"channel": "FAX"}, "desks.acme_zendesk.channel"),
        ({"triggers": {}}, "desks.acme_zendesk.triggers"),
        ({"link_validity_minutes": 0}, "desks.acme_zendesk.link_validity_minutes"),
        ({"kind": "jira"}, "desks.acme_zendesk"),
        ({"surprise": 1}, "desks.acme_zendesk.surprise"),
    ],
)
def test_given_a_bad_desk_field_then_the_error_names_it(
    change: dict[str, object], named: str
) -> None:
    data = settings_data()
    data["desks"]["acme_zendesk"].update(change)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(**data)


def test_given_a_bad_desk_name_then_refused() -> None:
    data = settings_data()
    data["desks"] = {"Acme-Desk": data["desks"]["acme_zendesk"]}
    with pytest.raises(ConfigError, match="Acme-Desk"):
        load_settings(**data)


def test_given_two_desks_sharing_a_push_secret_then_refused() -> None:
    data = settings_data()
    data["desks"]["second"] = dict(data["desks"]["acme_zendesk"])
    with pytest.raises(ConfigError, match="share a webhook secret"):
        load_settings(**data)


def test_given_a_toml_file_and_env_secrets_then_both_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "deskgate.toml"
    config.write_text(
        """
[incode]
api_url = "https://saas-api.incodesmile.com"
auth_url = "https://auth.incode.com"
integration_reference = "ref"
client_id = "cid"
executive_email = "reader@acme.com"

[desks.acme]
kind = "zendesk"
base_url = "https://acme.zendesk.com"
email = "deskgate@acme.com"
channel = "SMS"
[desks.acme.triggers]
idv_mfa_reset = "MFA reset"
"""
    )
    monkeypatch.setenv("DESKGATE_CONFIG", str(config))
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6379/2")
    for name, value in {
        "INCODE__CLIENT_SECRET": "s1",
        "INCODE__API_KEY": "s2",
        "INCODE__EXECUTIVE_PASSWORD": "s3",
        "INCODE__WEBHOOK_SECRET": "s4-a-long-webhook-secret",
        "DESKS__ACME__API_TOKEN": "s5",
        "NOTE_SECRET": "a-note-sealing-secret",
    }.items():
        monkeypatch.setenv(f"DESKGATE_{name}", value)
    settings = load_settings()
    assert settings.redis_url == "redis://redis.internal:6379/2"
    desk = settings.desks["acme"]
    assert isinstance(desk, ZendeskDeskConfig) and desk.channel == "SMS"
    assert desk.api_token is not None and desk.api_token.get_secret_value() == "s5"
    assert settings.incode.api_base == "https://saas-api.incodesmile.com"


def test_given_a_config_path_that_does_not_exist_then_the_error_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESKGATE_CONFIG", "/nonexistent/deskgate.toml")
    with pytest.raises(ConfigError, match="no such file"):
        load_settings()


def test_the_example_config_loads_with_its_secrets_from_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example_config(monkeypatch)
    settings = load_settings()
    assert {d.kind for d in settings.desks.values()} == {"zendesk", "servicenow"}


@pytest.mark.parametrize("value", ["", "too-short-15chr"])
def test_a_missing_or_short_note_secret_fails_naming_the_field(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = settings_data()
    data["note_secret"] = value
    with pytest.raises(ConfigError, match=r"note_secret: .*at least 16 characters"):
        load_settings(**data)
    del data["note_secret"]
    with pytest.raises(ConfigError, match=r"note_secret: Field required.*DESKGATE_NOTE_SECRET"):
        load_settings(**data)


# -- webhook secrets: unset is "no push"; empty or short never loads ----------------------------

WEBHOOK_SECRET_FIELDS = [
    (("incode", "webhook_secret"), "incode.webhook_secret"),
    (("incode", "webhook_previous_secret"), "incode.webhook_previous_secret"),
    (("desks", "acme_zendesk", "webhook_secret"), "desks.acme_zendesk.webhook_secret"),
    (
        ("desks", "acme_zendesk", "webhook_previous_secret"),
        "desks.acme_zendesk.webhook_previous_secret",
    ),
]


@pytest.mark.parametrize("value", ["", "fifteen-chars-x"])
@pytest.mark.parametrize(("path", "named"), WEBHOOK_SECRET_FIELDS)
def test_given_an_empty_or_short_webhook_secret_then_start_up_fails_naming_it(
    path: tuple[str, ...], named: str, value: str
) -> None:
    data = settings_data()
    *parents, field = path
    target = data
    for part in parents:
        target = target[part]
    target[field] = value
    with pytest.raises(ConfigError) as refused:
        load_settings(**data)
    assert f"{named}: Value error, must be at least 16 characters" in str(refused.value)
    assert value not in str(refused.value) or not value  # the secret is not echoed


def test_given_a_blank_push_secret_in_the_environment_then_start_up_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``.env.example`` used to ship: ``…__WEBHOOK_SECRET=`` with nothing after it."""
    monkeypatch.setenv("DESKGATE_DESKS__ACME_ZENDESK__WEBHOOK_SECRET", "")
    data = settings_data()
    del data["desks"]["acme_zendesk"]["webhook_secret"]
    with pytest.raises(ConfigError, match=r"desks\.acme_zendesk\.webhook_secret"):
        load_settings(**data)


def test_an_unset_push_secret_is_poll_only_and_a_16_character_one_loads() -> None:
    data = settings_data()
    del data["desks"]["acme_zendesk"]["webhook_secret"]
    assert load_settings(**data).desks["acme_zendesk"].webhook_secret is None
    data["desks"]["acme_zendesk"]["webhook_secret"] = "x" * 16
    data["incode"]["webhook_previous_secret"] = "y" * 16
    settings = load_settings(**data)
    assert settings.desks["acme_zendesk"].webhook_secret is not None


def example_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """``config/example.toml`` with its required secrets in the environment, no push secrets."""
    monkeypatch.setenv("DESKGATE_CONFIG", str(Path(__file__).parents[2] / "config/example.toml"))
    for name in (
        "INCODE__CLIENT_SECRET",
        "INCODE__API_KEY",
        "INCODE__EXECUTIVE_PASSWORD",
        "INCODE__WEBHOOK_SECRET",
        "DESKS__ACME_ZENDESK__API_TOKEN",
        "DESKS__ACME_SERVICENOW__PASSWORD",
        "NOTE_SECRET",
    ):
        monkeypatch.setenv(f"DESKGATE_{name}", "x-long-enough-secret")


def test_check_config_says_push_is_on_exactly_when_a_push_secret_is_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example_config(monkeypatch)
    monkeypatch.setenv("DESKGATE_DESKS__ACME_ZENDESK__WEBHOOK_SECRET", "zendesk-signing-secret")
    assert cli.main(["check-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    [zendesk] = [line for line in lines if "desk acme_zendesk" in line]
    [servicenow] = [line for line in lines if "desk acme_servicenow" in line]
    assert "push+poll" in zendesk
    assert "poll only" in servicenow


def test_check_config_refuses_a_blank_push_secret_instead_of_calling_it_poll_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blank secret used to load, authenticate pushes signed with the empty key, and be
    reported as "poll only"."""
    example_config(monkeypatch)
    monkeypatch.setenv("DESKGATE_DESKS__ACME_SERVICENOW__WEBHOOK_SECRET", "")
    assert cli.main(["check-config"]) == 2
    out = capsys.readouterr()
    assert "poll only" not in out.out
    assert "desks.acme_servicenow.webhook_secret" in out.err
    assert "at least 16 characters" in out.err


def test_retention_must_outlive_what_recovery_would_still_believe() -> None:
    data = settings_data(retention_days=3)
    data["desks"]["acme_zendesk"]["review_timeout_hours"] = 96
    with pytest.raises(ConfigError, match="retention_days must cover desk 'acme_zendesk'"):
        load_settings(**data)
    data["desks"]["acme_zendesk"]["review_timeout_hours"] = 48
    assert load_settings(**data).retention_days == 3


def test_a_call_deadline_that_cannot_end_inside_the_task_lock_is_refused_naming_both() -> None:
    """A 300 s call under a 10 s task limit (a 40 s lock) outlives the lock: another worker could
    take the verification over while a request for a link may still be answered."""
    data = settings_data(task_time_limit_seconds=10, http_deadline_seconds=300)
    with pytest.raises(ConfigError) as err:
        load_settings(**data)
    assert "http_deadline_seconds (300)" in str(err.value)
    assert "task_time_limit_seconds + 20 (30 with task_time_limit_seconds = 10)" in str(err.value)
    data.update(http_deadline_seconds=30)  # the longest call that still ends inside the lock
    assert load_settings(**data).task_lock_seconds == 40


SECRET_VARIABLES = [
    "DESKGATE_INCODE__CLIENT_SECRET",
    "DESKGATE_INCODE__API_KEY",
    "DESKGATE_INCODE__EXECUTIVE_PASSWORD",
    "DESKGATE_INCODE__WEBHOOK_SECRET",
    "DESKGATE_DESKS__ACME_ZENDESK__API_TOKEN",
    "DESKGATE_DESKS__ACME_SERVICENOW__PASSWORD",
    "DESKGATE_NOTE_SECRET",
]


def secret_file(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "secret"
    path.write_text(content)
    return path


def test_every_secret_can_come_from_a_file_its_trailing_newline_stripped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As container platforms mount them: DESKGATE_<PATH>_FILE names the file."""
    example_config(monkeypatch)
    for at, variable in enumerate(SECRET_VARIABLES):
        monkeypatch.delenv(variable)
        path = tmp_path / f"secret-{at}"
        path.write_text(f"{variable.lower()}-from-a-file\n")
        monkeypatch.setenv(f"{variable}_FILE", str(path))
    monkeypatch.setenv("DESKGATE_METRICS_TOKEN_FILE", str(secret_file(tmp_path, "m" * 16 + "\r\n")))
    settings = load_settings()
    zendesk, servicenow = settings.desks["acme_zendesk"], settings.desks["acme_servicenow"]
    read = {
        "DESKGATE_INCODE__CLIENT_SECRET": settings.incode.client_secret,
        "DESKGATE_INCODE__API_KEY": settings.incode.api_key,
        "DESKGATE_INCODE__EXECUTIVE_PASSWORD": settings.incode.executive_password,
        "DESKGATE_INCODE__WEBHOOK_SECRET": settings.incode.webhook_secret,
        "DESKGATE_DESKS__ACME_ZENDESK__API_TOKEN": getattr(zendesk, "api_token", None),
        "DESKGATE_DESKS__ACME_SERVICENOW__PASSWORD": getattr(servicenow, "password", None),
        "DESKGATE_NOTE_SECRET": settings.note_secret,
    }
    assert {
        variable: secret.get_secret_value() if secret else None for variable, secret in read.items()
    } == {variable: f"{variable.lower()}-from-a-file" for variable in SECRET_VARIABLES}
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == "m" * 16


def test_a_secret_given_both_directly_and_as_a_file_stops_start_up_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example_config(monkeypatch)
    path = secret_file(tmp_path, "another-long-secret")
    monkeypatch.setenv("DESKGATE_INCODE__API_KEY_FILE", str(path))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "DESKGATE_INCODE__API_KEY and DESKGATE_INCODE__API_KEY_FILE" in str(err.value)


@pytest.mark.parametrize(
    ("content", "said"), [(None, "cannot read the file"), ("\n", "the file is empty")]
)
def test_a_secret_file_missing_or_empty_stops_start_up_naming_the_variable(
    content: str | None, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example_config(monkeypatch)
    monkeypatch.delenv("DESKGATE_NOTE_SECRET")
    path = tmp_path / "note-secret"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("DESKGATE_NOTE_SECRET_FILE", str(path))
    with pytest.raises(ConfigError, match=f"DESKGATE_NOTE_SECRET_FILE={path}: {said}"):
        load_settings()
    assert cli.main(["check-config"]) != 0


def test_an_empty_previous_slot_file_means_no_previous_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its variable stays set between rotations (docs/operations.md, "Rotating secrets")."""
    example_config(monkeypatch)
    monkeypatch.setenv("DESKGATE_NOTE_PREVIOUS_SECRET_FILE", str(secret_file(tmp_path, "\n")))
    assert load_settings().note_previous_secret is None
    (tmp_path / "secret").write_text("the-old-note-secret\n")
    previous = load_settings().note_previous_secret
    assert previous is not None and previous.get_secret_value() == "the-old-note-secret"


def test_a_short_secret_from_a_file_is_refused_like_one_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example_config(monkeypatch)
    monkeypatch.delenv("DESKGATE_INCODE__WEBHOOK_SECRET")
    path = secret_file(tmp_path, "tiny-secret\n")
    monkeypatch.setenv("DESKGATE_INCODE__WEBHOOK_SECRET_FILE", str(path))
    with pytest.raises(ConfigError, match=r"incode\.webhook_secret: .*at least 16") as err:
        load_settings()
    assert "tiny-secret" not in str(err.value)


def test_only_secrets_are_read_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A setting that is no secret belongs in the config file."""
    example_config(monkeypatch)
    monkeypatch.setenv("DESKGATE_DESKS__ACME_ZENDESK__EMAIL_FILE", str(secret_file(tmp_path, "a")))
    with pytest.raises(
        ConfigError, match=r"DESKGATE_DESKS__ACME_ZENDESK__EMAIL_FILE: .* not a secret"
    ):
        load_settings()


def test_check_config_shows_a_redis_url_without_a_password_in_its_query(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """redis-py reads ``?password=``; check-config printed everything after the "@"."""
    example_config(monkeypatch)
    monkeypatch.setenv(
        "DESKGATE_REDIS_URL", "redis://:in-userinfo@redis.internal:6380/2?password=in-query"
    )
    assert cli.main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "in-query" not in out and "in-userinfo" not in out
    assert "  redis: redis://redis.internal:6380/2\n" in out
