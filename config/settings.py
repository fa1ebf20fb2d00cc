"""Settings: non-secret values from a TOML file, secrets from the environment.

The TOML file is named by ``DESKGATE_CONFIG`` (see ``config/example.toml``). Every field can also be
set from the environment as ``DESKGATE_<PATH>`` with ``__`` between levels, e.g.
``DESKGATE_INCODE__CLIENT_SECRET`` or ``DESKGATE_DESKS__<DESK>__WEBHOOK_SECRET``; the environment
wins over the file. Secrets are ``SecretStr`` so they never print. Each secret can instead be read
from a file named by the same variable plus ``_FILE`` (``SecretFiles``).

This module knows what every desk has (``DeskConfig``) but no desk kind: each kind's connector
package declares its own config class, and ``settings_model`` builds the ``Settings`` model for a
set of them (``connectors/registry.py`` passes the registered kinds).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.redis_url import check as check_redis_url

ENV_PREFIX = "DESKGATE_"
CONFIG_PATH_ENV = "DESKGATE_CONFIG"
FILE_SUFFIX = "_FILE"
DESK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
Channel = Literal["EMAIL", "SMS"]


# A task's lock on its verification outlives the task's time limit by this much, so only a
# crashed holder's lock runs out; and this much is left between a deadline and what it guards
# (workers' clocks differ, a socket gives up a moment late).
TASK_LOCK_GRACE_SECONDS = 30
CLOCK_MARGIN_SECONDS = 5.0


class ConfigError(Exception):
    """A configuration that cannot work; the message names every offending field."""


# Shared secrets that authenticate a caller: shorter ones could be guessed, and an empty one would
# turn the check off (an empty HMAC key still signs). Unset (None) is the only way to go without.
MIN_SECRET_LENGTH = 16


def _long_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _url(value: AnyHttpUrl) -> str:
    return str(value).rstrip("/")


class IncodeConfig(_Strict):
    """How to reach Incode and how Incode reaches us."""

    api_url: AnyHttpUrl = Field(description="Omni API base, e.g. https://saas-api.incodesmile.com")
    auth_url: AnyHttpUrl = Field(description="OAuth server base, e.g. https://auth.incode.com")
    integration_reference: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    api_key: SecretStr
    executive_email: str = Field(min_length=3)
    executive_password: SecretStr
    webhook_secret: SecretStr
    webhook_previous_secret: SecretStr | None = None
    webhook_secret_header: str = "x-incode-secret"  # noqa: S105 (a header name)
    # No webhook after this long: ask Incode (reconciliation), then again at this interval.
    reconcile_after_seconds: int = Field(default=300, ge=5)
    # Incode's OAuth webhook mode (README, "Incode set-up"): Incode fetches a bearer token from
    # /webhooks/incode/token with these client credentials. Off unless both are set.
    webhook_oauth_client_id: str | None = Field(default=None, min_length=1)
    webhook_oauth_client_secret: SecretStr | None = None
    # Accepted beside the client secret while Incode's configuration moves to the new one.
    webhook_oauth_client_previous_secret: SecretStr | None = None
    webhook_oauth_token_ttl_seconds: int = Field(default=3600, ge=60, le=86400)

    @field_validator(
        "webhook_secret",
        "webhook_previous_secret",
        "webhook_oauth_client_secret",
        "webhook_oauth_client_previous_secret",
    )
    @classmethod
    def _webhook_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        # Every one of them is checked on a public endpoint, where a short one could be guessed.
        return _long_secret(value)

    @model_validator(mode="after")
    def _oauth_pair(self) -> IncodeConfig:
        if (self.webhook_oauth_client_id is None) != (self.webhook_oauth_client_secret is None):
            raise ValueError(
                "webhook_oauth_client_id and webhook_oauth_client_secret must be set together"
            )
        if self.webhook_oauth_client_previous_secret and not self.webhook_oauth:
            raise ValueError("webhook_oauth_client_previous_secret needs webhook_oauth_client_id")
        return self

    @property
    def webhook_oauth(self) -> bool:
        """Incode may authenticate webhooks with a bearer token it got from us."""
        return self.webhook_oauth_client_id is not None

    @property
    def api_base(self) -> str:
        return _url(self.api_url)

    @property
    def auth_base(self) -> str:
        return _url(self.auth_url)


class DeskConfig(_Strict):
    """What every desk has, whatever its kind. A kind's own config subclasses it and narrows
    ``kind`` to a ``Literal`` of the kind's name: that literal is the kind's name everywhere."""

    kind: str
    base_url: AnyHttpUrl
    # Trigger marker (a tag, a flag field's value: each kind says) -> the reason shown to agents.
    triggers: dict[str, str] = Field(min_length=1)
    channel: Channel = "EMAIL"
    link_validity_minutes: int = Field(default=30, ge=1, le=10080)
    # Where the employee's loginHint comes from: "email", "external_id" or "user_field:<key>".
    login_hint: str = "email"
    webhook_secret: SecretStr | None = None
    webhook_previous_secret: SecretStr | None = None
    poll_interval_seconds: int = Field(default=60, ge=5)
    tag_prefix: str = Field(default="idv_", pattern=r"^[a-z0-9_]*$")
    # At most this many links per requester (their destination of record, whichever desk asks)
    # and per ticket within the window, so neither a person nor a loop can flood an employee.
    max_links_per_requester: int = Field(default=3, ge=1, le=100)
    max_links_per_ticket: int = Field(default=3, ge=1, le=100)
    link_cap_window_minutes: int = Field(default=60, ge=1, le=10080)
    # And at most this many per requester in a long window, so a slow flood (3 an hour, every
    # hour) is capped too. The window must be longer than the short one, the cap no lower.
    max_links_per_requester_long: int = Field(default=5, ge=1, le=1000)
    link_cap_long_window_hours: int = Field(default=24, ge=1, le=168)
    # A result under manual review for longer than this ends as expired (Incode's reviewers may
    # never decide); a gate note older than the link's expiry plus this is never recovered.
    review_timeout_hours: float = Field(default=72, gt=0, le=720)
    # Where the link goes: "desk" = the requester's e-mail or phone of record in this desk, used
    # only if it has not changed for ``destination_min_age_hours`` (an agent cannot redirect the
    # link by editing the profile "on the caller's word"); "incode" = Incode delivers it to the
    # contact enrolled with it, and Deskgate sends only the loginHint and the channel.
    destination: Literal["desk", "incode"] = "desk"
    destination_min_age_hours: float = Field(default=72, ge=0, le=8760)
    # A gate lifted before the result (hold or pending marker taken off) is always recorded;
    # "restore" also puts the hold and the marker back until the result (docs/bypass.md).
    gate_enforcement: Literal["record", "restore"] = "record"
    # How often the marker audit reads the tickets whose verified marker changed since its last
    # run, to overturn one Deskgate did not write (docs/bypass.md).
    marker_audit_interval_seconds: int = Field(default=300, ge=30)
    # The identity provider (``[idps.<name>]``) whose record names the employee: the login hint
    # and the contact the link goes to come from it, and a verified result may open a grant to
    # act in it (docs/idp.md). ``idp_match``: the requester's e-mail in this desk is compared
    # with the IdP user's e-mail, or with its login. ``privileged_policy``: an admin is
    # verified like anyone (and said to be privileged), or refused a helpdesk reset at all.
    idp: str | None = None
    idp_match: Literal["email", "login"] = "email"
    privileged_policy: Literal["verify", "refuse"] = "verify"

    @property
    def base(self) -> str:
        return _url(self.base_url)

    @field_validator("webhook_secret", "webhook_previous_secret")
    @classmethod
    def _push_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        return _long_secret(value)  # unset: "poll only"; set: long enough to mean something

    @field_validator("login_hint")
    @classmethod
    def _login_hint_source(cls, value: str) -> str:
        if value in ("email", "external_id") or re.fullmatch(r"user_field:[A-Za-z0-9_.]+", value):
            return value
        raise ValueError("must be 'email', 'external_id' or 'user_field:<key>'")

    @model_validator(mode="after")
    def _long_cap_is_longer(self) -> DeskConfig:
        if self.link_cap_long_window_hours * 60 <= self.link_cap_window_minutes:
            raise ValueError(
                "link_cap_long_window_hours must be longer than link_cap_window_minutes"
            )
        if self.max_links_per_requester_long < self.max_links_per_requester:
            raise ValueError(
                "max_links_per_requester_long must be at least max_links_per_requester (the "
                "short window's cap would never be reached)"
            )
        return self

    @field_validator("triggers")
    @classmethod
    def _trigger_names(cls, value: dict[str, str]) -> dict[str, str]:
        for marker in value:
            if not re.fullmatch(r"[A-Za-z0-9_.:-]+", marker):
                raise ValueError(f"trigger {marker!r} has characters a tag cannot hold")
        return value


class IdpConfig(_Strict):
    """What every identity provider has, whatever its kind (``connectors/identity_provider.py``).
    A kind's own config subclasses it and narrows ``kind`` to a ``Literal`` of its name, as a
    desk kind's does."""

    kind: str
    # Members of these groups (by the IdP's group name) count as privileged, besides holders of
    # an admin role.
    privileged_groups: list[str] = Field(default_factory=list)
    # The IdP ids of break-glass admins (docs/bypass.md): their admin actions are reported as
    # ``idp.break_glass`` (info), never as bypasses.
    break_glass_actors: list[str] = Field(default_factory=list)


class ReasonConfig(_Strict):
    """What a verified result for a reason (a trigger's value) lets an agent ask Deskgate to do
    in the IdP: each action one of ``connectors.identity_provider.ACTIONS`` that the IdP of
    every desk using the reason supports (``connectors.registry`` checks both at start-up)."""

    actions: list[str] = Field(default_factory=list)


class AuditSinkConfig(_Strict):
    """Where audit events are forwarded (docs/audit.md, "Forwarding to a SIEM"): a Splunk HTTP
    Event Collector (``token``), or any HTTPS endpoint taking a signed JSON array (``secret``)."""

    url: AnyHttpUrl = Field(description="the HEC base (https://splunk:8088) or the JSON endpoint")
    format: Literal["splunk_hec", "json_hmac"] = "splunk_hec"
    token: SecretStr | None = None  # splunk_hec: the HEC token
    secret: SecretStr | None = None  # json_hmac: the HMAC-SHA256 key
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    batch_size: int = Field(default=100, ge=1, le=1000)
    retry_max_seconds: float = Field(default=30.0, ge=1, le=600)  # the backoff's cap
    host: str = Field(default="deskgate", min_length=1)  # HEC's "host" field

    @field_validator("token", "secret")
    @classmethod
    def _sink_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        return _long_secret(value)

    @field_validator("url")
    @classmethod
    def _sink_url(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        # The token and the events (who was verified, when) must not cross a network in clear;
        # credentials go in token/secret, never in the URL, where logs and check-config show it.
        loopback = value.host in ("127.0.0.1", "localhost", "::1", "[::1]")
        if value.scheme != "https" and not loopback:
            raise ValueError("must be https:// (plain http only to a SIEM on this host)")
        if value.username or value.password or value.query or value.fragment:
            raise ValueError("must not carry a user, password, query or fragment")
        return value

    @model_validator(mode="after")
    def _credential_for_format(self) -> AuditSinkConfig:
        needed = "token" if self.format == "splunk_hec" else "secret"
        if getattr(self, needed) is None:
            raise ValueError(f"format {self.format!r} needs {needed} (set it in the environment)")
        return self

    @property
    def base(self) -> str:
        return _url(self.url)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("DESKGATE_REDIS_URL", "REDIS_URL", "redis_url"),
    )
    # Where the desks and Incode reach Deskgate's web app (https://deskgate.example.com):
    # ``deskgate setup`` points the webhooks there and ``deskgate doctor`` checks it answers.
    public_url: AnyHttpUrl | None = None
    key_prefix: str = Field(default="dg", pattern=r"^[A-Za-z0-9_:-]+$")
    queue: str = Field(default="deskgate", pattern=r"^[A-Za-z0-9_.-]+$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=60)  # connect, each read or write
    # The most one outside call may take in all, however its answer trickles in.
    http_deadline_seconds: float = Field(default=30.0, gt=0, le=300)
    sweep_interval_seconds: int = Field(default=30, ge=1)
    # Bypass detection (docs/bypass.md): how often each IdP's audit log is read, and how long
    # after a verified verification an admin action on that user counts as explained by it.
    idp_poll_interval_seconds: int = Field(default=60, ge=5)
    verified_window_minutes: int = Field(default=30, ge=1, le=1440)
    webhook_tolerance_seconds: int = Field(default=300, ge=30)
    webhook_max_body_bytes: int = Field(default=65536, ge=1024)
    # A body still arriving after this long gets 408 (webhooks/deadline.py): slow clients let go.
    webhook_body_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    retention_days: int = Field(default=30, ge=1)
    # The audit trail (docs/audit.md) keeps its own retention, and a hard bound on its entries
    # (about 400 bytes of Redis memory each) so Redis memory stays bounded.
    audit_retention_days: int = Field(default=400, ge=1)
    audit_max_events: int = Field(default=500_000, ge=1000)
    audit_sink: AuditSinkConfig | None = None
    # A task is killed after this long; a crashed worker's step is resumed by the sweep soon after.
    task_time_limit_seconds: int = Field(default=120, ge=10, le=1800)
    # Prometheus metrics (docs/metrics.md). The web app serves /metrics only to a bearer of
    # metrics_token (unset: not at all); the worker serves its own on metrics_host:metrics_port
    # (unset or 0: no server). metrics_enabled = false records nothing (the benchmark's "off").
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None
    metrics_previous_token: SecretStr | None = None  # accepted too while scrapers move over
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Seals Deskgate's gate notes (HMAC), so a note someone else wrote is never trusted when a
    # verification is recovered from the ticket. Rotate by moving it to note_previous_secret.
    note_secret: SecretStr
    note_previous_secret: SecretStr | None = None
    # Keys the audit trail's hash chain (docs/audit.md); unset: a key derived from note_secret.
    # Rotate by moving it to audit_previous_secret.
    audit_secret: SecretStr | None = None
    audit_previous_secret: SecretStr | None = None
    incode: IncodeConfig
    # Validated as one of the registered kinds' configs in the model ``settings_model`` builds.
    desks: dict[str, DeskConfig] = Field(min_length=1)
    desk_kinds: ClassVar[frozenset[str]] = frozenset()
    # Identity providers by name (``[idps.<name>]``), each one of the registered IdP kinds.
    idps: dict[str, IdpConfig] = Field(default_factory=dict)
    idp_kinds: ClassVar[frozenset[str]] = frozenset()
    # ``[reasons."<reason>"]``: the IdP actions a verified result for that reason allows.
    reasons: dict[str, ReasonConfig] = Field(default_factory=dict)
    # How long after a verified result an agent may ask for one of those actions, once.
    grant_minutes: int = Field(default=15, ge=1, le=60)

    @field_validator("redis_url")
    @classmethod
    def _redis_url_form(cls, value: str) -> str:
        check_redis_url(value)  # a ValueError names the field and says what is wrong
        return value

    @field_validator(
        "note_secret", "note_previous_secret", "metrics_token", "metrics_previous_token"
    )
    @classmethod
    def _note_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        return _long_secret(value)

    @field_validator("audit_secret", "audit_previous_secret")
    @classmethod
    def _audit_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        return _long_secret(value)

    @property
    def task_lock_seconds(self) -> int:
        """How long a task holds its verification's lock (``worker.lifecycle.flow``)."""
        return self.task_time_limit_seconds + TASK_LOCK_GRACE_SECONDS

    @property
    def public_base(self) -> str | None:
        """``public_url`` without its trailing slash, for joining paths; None when unset."""
        return _url(self.public_url) if self.public_url else None

    @property
    def note_secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.note_secret, self.note_previous_secret) if s]

    @field_validator("desks", "idps")
    @classmethod
    def _desk_names(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        what = "desk" if info.field_name == "desks" else "IdP"
        for name in value:
            if not DESK_NAME.fullmatch(name):
                raise ValueError(f"{what} name {name!r} must match {DESK_NAME.pattern}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _built_for_kinds(cls, data: Any) -> Any:
        if not cls.desk_kinds:  # this base alone would read every desk as a bare DeskConfig
            raise TypeError("load settings with a model from settings_model (connectors.registry)")
        return data

    @model_validator(mode="after")
    def _retention_covers_open_verifications(self) -> Settings:
        # A finished record must outlive any gate note recovery would still believe, or a note
        # of a verification that ended could be adopted again once its record expired.
        for name, desk in self.desks.items():
            needed = desk.link_validity_minutes * 60 + desk.review_timeout_hours * 3600
            if self.retention_days * 86400 < needed:
                raise ValueError(
                    f"retention_days must cover desk {name!r}'s link validity plus its "
                    f"review_timeout_hours ({needed / 86400:.1f} days)"
                )
        return self

    @model_validator(mode="after")
    def _calls_end_inside_the_task_lock(self) -> Settings:
        # A request for a link may be in flight until its deadline (plus a margin); that window
        # must close before the task's lock runs out (less a margin), or another worker could
        # take the verification over while the first request may still be answered.
        most = self.task_lock_seconds - 2 * CLOCK_MARGIN_SECONDS
        if self.http_deadline_seconds > most:
            raise ValueError(
                f"http_deadline_seconds ({self.http_deadline_seconds:g}) must be at most "
                f"task_time_limit_seconds + {most - self.task_time_limit_seconds:g} "
                f"({most:g} with task_time_limit_seconds = {self.task_time_limit_seconds}): "
                "every outside call must end inside the task's lock"
            )
        return self

    @model_validator(mode="after")
    def _desk_idps_are_configured(self) -> Settings:
        for name, desk in self.desks.items():
            if desk.idp is not None and desk.idp not in self.idps:
                known = ", ".join(sorted(self.idps)) or "none"
                raise ValueError(
                    f"desks.{name}.idp names {desk.idp!r}, which is not a configured "
                    f"[idps.<name>] (configured: {known})"
                )
        return self

    @model_validator(mode="after")
    def _distinct_push_secrets(self) -> Settings:
        # The push signature tells which desk sent it, so two desks of a kind cannot share a secret.
        seen: dict[tuple[str, str], str] = {}
        for name, desk in self.desks.items():
            for secret in (desk.webhook_secret, desk.webhook_previous_secret):
                if secret is None:
                    continue
                key = (desk.kind, secret.get_secret_value())
                if key in seen and seen[key] != name:
                    raise ValueError(f"desks {seen[key]!r} and {name!r} share a webhook secret")
                seen[key] = name
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get(CONFIG_PATH_ENV)
        sources: list[PydanticBaseSettingsSource] = [
            init_settings, SecretFiles(settings_cls, env_settings)
        ]  # fmt: skip
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)


class SecretFiles(PydanticBaseSettingsSource):
    """Secrets from files: ``DESKGATE_<PATH>_FILE`` names a file whose content, without its
    trailing newline, is the secret ``DESKGATE_<PATH>`` would give (container platforms mount
    secrets as files, and a file keeps them out of the process listing and ``docker inspect``).

    Only secret settings (``SecretStr``) are read this way. Setting the variable and its file,
    naming anything but a secret, and a file that cannot be read or is empty all stop start-up
    with a ``ConfigError`` naming the variable; the file's content is never shown.

    It wraps the environment's source, which reads ``DESKGATE_DESKS__ACME__API_TOKEN_FILE`` as a
    field ``api_token_file`` of the desk (unknown, so refused): the file's value takes its place.
    """

    def __init__(
        self, settings_cls: type[BaseSettings], environment: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self.environment = environment

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = self.environment()
        given = {name.upper() for name in os.environ}
        for name, path in sorted(os.environ.items()):
            upper = name.upper()
            if not (upper.startswith(ENV_PREFIX) and upper.endswith(FILE_SUFFIX)):
                continue
            variable = upper.removesuffix(FILE_SUFFIX)
            parts = variable.removeprefix(ENV_PREFIX).lower().split("__")
            leaves = _leaves(self.settings_cls, parts)
            if not leaves:
                continue  # not a setting (as the environment's source ignores DESKGATE_OTHER)
            if SecretStr not in leaves:
                raise ConfigError(
                    f"{name}: {variable} is not a secret; only secrets are read from files"
                )
            if variable in given:
                raise ConfigError(f"{variable} and {name} are both set: set one of them")
            *parents, leaf = parts
            node = data
            for part in parents:
                node = node.setdefault(part, {})
            node.pop(leaf + FILE_SUFFIX.lower(), None)
            value = _read_secret(name, path, optional="previous" in leaf)
            if value:
                node[leaf] = value
        return data


def _read_secret(variable: str, path: str, optional: bool = False) -> str:
    """The file's secret. An empty file is refused, except for a ``*_previous_*`` slot, where it
    means "no previous secret" (its variable stays set between rotations: docs/operations.md)."""
    try:
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{variable}={path}: cannot read the file ({reason})") from None
    if not value and not optional:
        raise ConfigError(f"{variable}={path}: the file is empty")
    return value


def _leaves(annotation: Any, parts: list[str]) -> list[Any]:
    """The types a settings path (desk names included) can end at: through nested models, dicts
    (a key: a desk's name) and unions (the desk kinds, optional fields). Empty: no such setting."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaves(get_args(annotation)[0], parts)
    if origin in (Union, UnionType):
        return [leaf for arg in get_args(annotation) for leaf in _leaves(arg, parts)]
    if not parts:
        return [annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(parts[0])
        return [] if field is None else _leaves(field.annotation, parts[1:])
    if origin is dict:
        return _leaves(get_args(annotation)[1], parts[1:])
    return []


def kind_of(config: type[DeskConfig] | type[IdpConfig]) -> str:
    """A desk's or an IdP's config class's kind name: the one value its ``kind`` literal
    allows."""
    names = get_args(config.model_fields["kind"].annotation)
    if len(names) != 1 or not isinstance(names[0], str):
        raise TypeError(f"{config.__name__}.kind must be a Literal of one name")
    return names[0]


def _one_of(configs: Sequence[type[BaseModel]]) -> Any:
    """One of ``configs``, told apart by ``kind``."""
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[tuple(configs)], Field(discriminator="kind")]  # noqa: UP007


def settings_model(
    desk_configs: Sequence[type[DeskConfig]], idp_configs: Sequence[type[IdpConfig]] = ()
) -> type[Settings]:
    """The ``Settings`` model whose desks are each one of ``desk_configs`` and whose IdPs each
    one of ``idp_configs``, told apart by ``kind``; an unknown kind is refused, naming the known
    ones."""
    kinds = frozenset(kind_of(c) for c in desk_configs)
    if not desk_configs or len(kinds) != len(desk_configs):
        raise ValueError("settings need at least one desk kind, each with its own name")
    idp_kinds = frozenset(kind_of(c) for c in idp_configs)
    if len(idp_kinds) != len(idp_configs):
        raise ValueError("each IdP kind needs its own name")
    desk: Any = _one_of(desk_configs)
    fields: dict[str, Any] = {"desks": (dict[str, desk], Field(min_length=1))}
    if idp_configs:
        idp: Any = _one_of(idp_configs)
        fields["idps"] = (dict[str, idp], Field(default_factory=dict))
    model = create_model("Settings", __base__=Settings, **fields)
    model.desk_kinds = kinds
    model.idp_kinds = idp_kinds
    return model


def _env_name(loc: tuple[str | int, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def _describe(error: Any, model: type[Settings]) -> str:
    # pydantic puts the union member's tag (the kind) in the path; the user never wrote it.
    loc = tuple(p for p in error["loc"] if p not in model.desk_kinds | model.idp_kinds)
    where = ".".join(str(p) for p in loc) or "(top level)"
    hint = ""
    if error["type"] == "missing":
        variable = _env_name(loc)
        secret = SecretStr in _leaves(model, [str(p) for p in loc])
        hint = f" (set it in the config file or as {variable}" + (
            f", or {variable}{FILE_SUFFIX} naming a file that holds it)" if secret else ")"
        )
    return f"  {where}: {error['msg']}{hint}"


def load_settings(model: type[Settings], **overrides: Any) -> Settings:
    """Load and validate with ``model`` (from ``settings_model``); raise ``ConfigError`` naming
    each bad field."""
    path = os.environ.get(CONFIG_PATH_ENV)
    if path and not Path(path).is_file():
        raise ConfigError(f"{CONFIG_PATH_ENV}={path}: no such file")
    try:
        return model(**overrides)
    except ValidationError as exc:
        lines = [_describe(e, model) for e in exc.errors()]
        source = f" (file {path})" if path else ""
        raise ConfigError(
            "invalid Deskgate configuration" + source + ":\n" + "\n".join(lines)
        ) from None
    except ValueError as exc:  # e.g. TOML syntax
        raise ConfigError(f"cannot read the Deskgate configuration: {exc}") from None
