"""What an identity provider kind supplies: its config model and its connector (and, like a desk
kind, optionally its ``deskgate setup`` and ``doctor``).

Each kind's package (``connectors/okta/``, ``connectors/entra/``) defines one ``KIND``;
``connectors/registry.py`` lists them, and the settings model and the connectors the worker
builds come from that list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from config.settings import IdpConfig, kind_of
from connectors.identity_provider import Action, IdentityProvider
from connectors.provisioning import Change, Check

C = TypeVar("C", bound=IdpConfig)


@dataclass(frozen=True)
class IdpKind(Generic[C]):
    config: type[C]  # its ``kind`` literal is the kind's name
    # (IdP name, config, HTTP timeout, whole-call deadline) -> the connector
    connector: Callable[[str, C, float, float], IdentityProvider]
    # ``deskgate setup <idp>``: what to set up in the IdP (read-only checks and the steps an
    # admin takes); None: not supported.
    setup: Callable[[str, C, bool], list[Change]] | None = None
    # ``deskgate doctor``: proves each permission the configured actions need, by reading only.
    doctor: Callable[[str, C], list[Check]] | None = None

    @property
    def name(self) -> str:
        return kind_of(self.config)

    @property
    def actions(self) -> frozenset[Action]:
        """What the kind can perform (its connector's ``actions``), known before any is built."""
        found: frozenset[Action] = getattr(self.connector, "actions", frozenset())
        return found

    def build(
        self, name: str, config: IdpConfig, timeout: float, deadline: float
    ) -> IdentityProvider:
        if not isinstance(config, self.config):
            raise TypeError(f"IdP {name!r} is configured as {config.kind!r}, not {self.name!r}")
        return self.connector(name, config, timeout, deadline)
