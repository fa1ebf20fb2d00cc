"""The desk kinds and identity provider kinds Deskgate knows: one line each. The settings model
(which kinds a desk or an IdP may be), the webhook endpoints (``/webhooks/<kind>``) and the
connectors the worker builds all come from these lists."""

from __future__ import annotations

from typing import Any

from config import settings
from config.settings import DeskConfig, IdpConfig, Settings
from connectors import entra, okta, servicenow, zendesk
from connectors.desk_kind import DeskKind
from connectors.identity_provider import IdentityProvider
from connectors.idp_kind import IdpKind
from connectors.ticketing import Desk

KINDS: dict[str, DeskKind[Any]] = {
    kind.name: kind
    for kind in (
        zendesk.KIND,
        servicenow.KIND,
    )
}

_IDPS: tuple[IdpKind[Any], ...] = (okta.KIND, entra.KIND)
IDP_KINDS: dict[str, IdpKind[Any]] = {kind.name: kind for kind in _IDPS}

SETTINGS: type[Settings] = settings.settings_model(
    [kind.config for kind in KINDS.values()], [kind.config for kind in IDP_KINDS.values()]
)


def load_settings(**overrides: Any) -> Settings:
    """The configuration (file, environment, ``overrides``), validated against every kind here."""
    return settings.load_settings(SETTINGS, **overrides)


def build_desk(name: str, config: DeskConfig, timeout: float, deadline: float = 30.0) -> Desk:
    return KINDS[config.kind].build(name, config, timeout, deadline)


def build_idp(
    name: str, config: IdpConfig, timeout: float, deadline: float = 30.0
) -> IdentityProvider:
    return IDP_KINDS[config.kind].build(name, config, timeout, deadline)
