"""The desk kinds and identity provider kinds Deskgate knows: one line each. The settings model
(which kinds a desk or an IdP may be), the webhook endpoints (``/webhooks/<kind>``) and the
connectors the worker builds all come from these lists."""

from __future__ import annotations

from typing import Any

from config import settings
from config.settings import ConfigError, DeskConfig, IdpConfig, Settings
from connectors import entra, okta, servicenow, zendesk
from connectors.desk_kind import DeskKind
from connectors.identity_provider import ACTIONS, IdentityProvider
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
    loaded = settings.load_settings(SETTINGS, **overrides)
    check_reason_actions(loaded)
    return loaded


def check_reason_actions(config: Settings) -> None:
    """Each ``[reasons."<reason>"].actions`` entry is an action Deskgate knows, and one the IdP
    of every desk whose triggers give that reason can perform (Entra has no unlock): otherwise
    a ``ConfigError`` naming the field."""
    problems = []
    for reason, allowed in config.reasons.items():
        field = f'reasons."{reason}".actions'
        for action in allowed.actions:
            if action not in ACTIONS:
                problems.append(f"  {field}: {action!r} is not one of {', '.join(ACTIONS)}")
                continue
            for desk_name, desk in config.desks.items():
                if desk.idp is None or reason not in desk.triggers.values():
                    continue
                kind = IDP_KINDS[config.idps[desk.idp].kind]
                if action not in kind.actions:
                    problems.append(
                        f"  {field}: {action!r} is not something {kind.name} can do (IdP "
                        f"{desk.idp!r} of desk {desk_name!r}); it can: "
                        + ", ".join(a for a in ACTIONS if a in kind.actions)
                    )
    if problems:
        raise ConfigError("invalid Deskgate configuration:\n" + "\n".join(problems))


def build_desk(name: str, config: DeskConfig, timeout: float, deadline: float = 30.0) -> Desk:
    return KINDS[config.kind].build(name, config, timeout, deadline)


def build_idp(
    name: str, config: IdpConfig, timeout: float, deadline: float = 30.0
) -> IdentityProvider:
    return IDP_KINDS[config.kind].build(name, config, timeout, deadline)
