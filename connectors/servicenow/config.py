"""A ServiceNow desk's settings, beyond what every desk has."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from config.settings import DeskConfig

# A ServiceNow role's name (``itil``, ``sn_incident_write``, ``x_acme_app.requester``).
RoleName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]*$")]


class ServiceNowDeskConfig(DeskConfig):
    """A ServiceNow table. Native tags are not writable through the Table API, so a record is
    flagged by a field's value (``flag_field`` in ``triggers``) and Deskgate's state lives in a
    status field plus the work notes. Choice values are per instance: defaults are the stock
    incident values (state 3 On Hold, hold_reason 1 Awaiting Caller, state 2 In Progress)."""

    kind: Literal["servicenow"]
    table: str = Field(default="incident", pattern=r"^[a-z][a-z0-9_]*$")
    requester_field: str = Field(default="caller_id", pattern=r"^[a-z][a-z0-9_]*$")
    flag_field: str = Field(default="u_idv_required", pattern=r"^[a-z][a-z0-9_]*$")
    # After a final outcome the flag field is set to ``consumed_value``, so flagging the record
    # again asks for a new verification. Without it, a record with an outcome in the status
    # field is not picked up again until an agent clears that field.
    consume_flag: bool = True
    consumed_value: str = "false"
    status_field: str = Field(default="u_idv_status", pattern=r"^[a-z][a-z0-9_]*$")
    # The choice field whose value asks for an identity-provider action (``unlock``, ...) after
    # a verified result; a write ACL limits it to ``verification_roles`` (``records.py``).
    action_field: str = Field(default="u_idv_action", pattern=r"^[a-z][a-z0-9_]*$")
    # Extra encoded-query conditions every flagged record must meet.
    flag_query: str = "active=true"
    username: str = ""
    password: SecretStr | None = None
    # The user name Deskgate's writes appear under (``sys_created_by`` of its work notes);
    # ``username`` unless set. Needed for client credentials, whose user the config cannot tell.
    api_user_name: str | None = Field(default=None, min_length=1)
    auth: Literal["basic", "oauth_password", "oauth_client_credentials"] = "basic"
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    gate_state: str = "3"
    gate_hold_reason: str | None = "1"  # None for tables without hold_reason (sc_req_item)
    release_state: str = "2"
    inactive_states: frozenset[str] = frozenset({"6", "7", "8"})  # resolved, closed, canceled
    closed_states: frozenset[str] = frozenset({"7", "8"})
    triggers: dict[str, str] = Field(default={"true": "identity verification"}, min_length=1)
    # The roles that may ask for a verification (and, after one, for an identity-provider action:
    # the action field's write ACL and UI actions): setup limits the UI action and a write ACL on
    # the flag field to them (``records.py``). Anyone else can neither click nor set the flag.
    verification_roles: list[RoleName] = Field(default=["itil"], min_length=1)

    @model_validator(mode="after")
    def _credentials(self) -> ServiceNowDeskConfig:
        if self.auth != "basic" and not (self.oauth_client_id and self.oauth_client_secret):
            raise ValueError(f"auth {self.auth!r} needs oauth_client_id and oauth_client_secret")
        if self.auth != "oauth_client_credentials" and not (self.username and self.password):
            raise ValueError(f"auth {self.auth!r} needs username and password")
        if self.auth == "oauth_client_credentials" and not self.api_user_name:
            raise ValueError(
                "auth 'oauth_client_credentials' needs api_user_name (the user its writes appear "
                "under), so recovery can tell Deskgate's own work notes from anyone else's"
            )
        return self

    @property
    def note_author(self) -> str:
        return self.api_user_name or self.username
