"""A Zendesk desk's settings, beyond what every desk has."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from config.settings import DeskConfig


class ZendeskDeskConfig(DeskConfig):
    kind: Literal["zendesk"]
    email: str = Field(min_length=3, description="the API user; its token acts with its rights")
    api_token: SecretStr
    gate_status: Literal["hold", "pending", "open"] = "hold"
    release_status: Literal["open", "pending", "hold"] = "open"
