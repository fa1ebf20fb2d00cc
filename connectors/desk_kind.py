"""What a desk kind supplies: its config model, its connector and how its pushes are read.

Each kind's package (``connectors/zendesk/``, ``connectors/servicenow/``) defines one ``KIND``;
``connectors/registry.py`` lists them, and everything else (the settings model, the webhook
endpoints, the connectors the worker builds) is derived from that list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from config.settings import DeskConfig, kind_of
from connectors.provisioning import Change, Check, DoctorRequest, SetupRequest
from connectors.push_dedupe import PushKeys, body_keys
from connectors.ticketing import Desk, PushAuth

C = TypeVar("C", bound=DeskConfig)


@dataclass(frozen=True)
class DeskKind(Generic[C]):
    config: type[C]  # its ``kind`` literal is the kind's name
    # (desk name, config, HTTP timeout, whole-call deadline) -> the connector
    connector: Callable[[str, C, float, float], Desk]
    # Does the push carry a valid signature (or credential) by one of these secrets?
    verify_push: Callable[[PushAuth, list[str]], bool]
    # The ticket ids an authenticated push names; ValueError (answered 400) if it names none.
    pushed_ticket_ids: Callable[[dict[str, Any]], list[str]]
    push_keys: PushKeys = body_keys
    # ``deskgate setup``: provision the desk (connectors/provisioning.py); None: not supported.
    setup: Callable[[SetupRequest[C]], list[Change]] | None = None
    # ``deskgate doctor``: the desk's checklist.
    doctor: Callable[[DoctorRequest[C]], list[Check]] | None = None

    @property
    def name(self) -> str:
        return kind_of(self.config)

    def build(self, name: str, config: DeskConfig, timeout: float, deadline: float) -> Desk:
        if not isinstance(config, self.config):
            raise TypeError(f"desk {name!r} is configured as {config.kind!r}, not {self.name!r}")
        return self.connector(name, config, timeout, deadline)
