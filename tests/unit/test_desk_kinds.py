"""Desk kinds come from one registry: the settings model, the names in configuration errors, the
webhook endpoints and the connectors are all derived from ``connectors.registry.KINDS``."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import ValidationError

from config.settings import ConfigError, DeskConfig, Settings, kind_of, settings_model
from connectors.registry import KINDS, SETTINGS, build_desk, load_settings
from connectors.zendesk.config import ZendeskDeskConfig
from tests.conftest import settings_data
from webhooks.app import create_app


class JiraDeskConfig(DeskConfig):
    """A kind the registry does not know, as the next one would start."""

    kind: Literal["jira"]
    site: str


def test_each_kinds_name_is_its_config_literal() -> None:
    assert {name: kind.config for name, kind in KINDS.items()} == {
        kind_of(kind.config): kind.config for kind in KINDS.values()
    }
    assert SETTINGS.desk_kinds == frozenset(KINDS)


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    data = settings_data()
    data["desks"]["acme_zendesk"]["kind"] = "jira"
    with pytest.raises(ConfigError) as raised:
        load_settings(**data)
    message = str(raised.value)
    assert "desks.acme_zendesk" in message
    assert all(f"'{name}'" in message for name in KINDS)


def test_a_bad_field_is_named_by_its_path_without_the_kind_pydantic_adds() -> None:
    data = settings_data()
    del data["desks"]["acme_zendesk"]["email"]
    with pytest.raises(ConfigError, match=r"desks\.acme_zendesk\.email: Field required"):
        load_settings(**data)


def test_a_new_kind_is_one_config_class_away_from_loading() -> None:
    model = settings_model([ZendeskDeskConfig, JiraDeskConfig])
    data = settings_data()
    data["desks"]["acme_jira"] = {
        "kind": "jira",
        "base_url": "https://acme.atlassian.net",
        "site": "acme",
        "triggers": {"idv": "identity check"},
    }
    desks = model(**data).desks
    assert isinstance(desks["acme_jira"], JiraDeskConfig)
    assert isinstance(desks["acme_zendesk"], ZendeskDeskConfig)
    del data["desks"]["acme_jira"]["site"]
    with pytest.raises(ValidationError, match="site"):
        model(**data)


def test_a_config_class_without_one_literal_kind_is_refused() -> None:
    class Vague(DeskConfig):
        kind: str

    with pytest.raises(TypeError, match="Literal of one name"):
        settings_model([ZendeskDeskConfig, Vague])
    with pytest.raises(ValueError, match="its own name"):
        settings_model([ZendeskDeskConfig, ZendeskDeskConfig])


def test_a_kind_builds_only_from_its_own_config() -> None:
    config = SETTINGS(**settings_data()).desks["acme_zendesk"]
    desk = build_desk("acme_zendesk", config, timeout=1)
    desk.close()
    with pytest.raises(TypeError, match="'zendesk', not 'servicenow'"):
        KINDS["servicenow"].build("acme_zendesk", config, 1, 1)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_registered_kind_has_a_push_endpoint(kind: str) -> None:
    client = create_app(SETTINGS(**settings_data())).test_client()
    # Unsigned: refused by the kind's own check (401), not unknown (404).
    assert client.post(f"/webhooks/{kind}", data=b"{}").status_code == 401
    assert client.post("/webhooks/jira", data=b"{}").status_code == 404


def test_the_base_settings_model_refuses_to_load_without_kinds() -> None:
    with pytest.raises(TypeError, match="settings_model"):
        Settings(**settings_data())


def test_a_registry_of_one_kind_loads_it_and_refuses_others() -> None:
    model = settings_model([ZendeskDeskConfig])
    assert isinstance(model(**settings_data()).desks["acme_zendesk"], ZendeskDeskConfig)
    data = settings_data()
    data["desks"]["acme_zendesk"]["kind"] = "jira"
    with pytest.raises(ValidationError, match="'zendesk'"):
        model(**data)
