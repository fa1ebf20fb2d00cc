"""The desk kinds Deskgate knows: one line each. The settings model (which kinds a desk may be),
the webhook endpoints (``/webhooks/<kind>``) and the connectors the worker builds all come from
this list."""

from __future__ import annotations

from typing import Any

from config import settings
from config.settings import DeskConfig, Settings
from connectors import servicenow, zendesk
from connectors.desk_kind import DeskKind
from connectors.ticketing import Desk

KINDS: dict[str, DeskKind[Any]] = {
    kind.name: kind
    for kind in (
        zendesk.KIND,
        servicenow.KIND,
    )
}

SETTINGS: type[Settings] = settings.settings_model([kind.config for kind in KINDS.values()])


def load_settings(**overrides: Any) -> Settings:
    """The configuration (file, environment, ``overrides``), validated against every kind here."""
    return settings.load_settings(SETTINGS, **overrides)


def build_desk(name: str, config: DeskConfig, timeout: float, deadline: float = 30.0) -> Desk:
    return KINDS[config.kind].build(name, config, timeout, deadline)
