"""Which desk kinds exist: how to build each one's connector and how to read its pushes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.settings import AnyDeskConfig
from connectors import servicenow, zendesk
from connectors.ticketing import Desk, PushAuth


@dataclass(frozen=True)
class DeskKind:
    build: Callable[[str, Any, float, float], Desk]
    verify_push: Callable[[PushAuth, list[str]], bool]
    pushed_ticket_ids: Callable[[dict[str, Any]], list[str]]


KINDS: dict[str, DeskKind] = {
    "zendesk": DeskKind(zendesk.ZendeskConnector, zendesk.verify_push, zendesk.pushed_ticket_ids),
    "servicenow": DeskKind(
        servicenow.ServiceNowConnector, servicenow.verify_push, servicenow.pushed_ticket_ids
    ),
}


def build_desk(name: str, config: AnyDeskConfig, timeout: float, deadline: float = 30.0) -> Desk:
    return KINDS[config.kind].build(name, config, timeout, deadline)
