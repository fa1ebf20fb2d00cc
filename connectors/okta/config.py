"""An Okta org's settings, beyond what every IdP has (``config.settings.IdpConfig``)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator

from config.settings import IdpConfig

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# What each use needs. Reading users and their groups and factors: okta.users.read; their admin
# roles: okta.roles.read; the System Log (changed_at, bypass detection): okta.logs.read; acting
# on a user: okta.users.manage.
READ_SCOPES = ("okta.users.read", "okta.roles.read", "okta.logs.read")
MANAGE_SCOPE = "okta.users.manage"


class OktaIdpConfig(IdpConfig):
    """One Okta org. Credentials come from the environment
    (``DESKGATE_IDPS__<NAME>__API_TOKEN`` or ``…__PRIVATE_KEY``): an API token (SSWS), or an
    OAuth "API Services" app authenticated with ``private_key_jwt`` (``client_id``,
    ``private_key`` as PEM, optionally ``key_id``: the ``kid`` of its registered key)."""

    kind: Literal["okta"]
    base_url: AnyHttpUrl = Field(description="the org URL, e.g. https://acme.okta.com")
    api_token: SecretStr | None = None
    client_id: str | None = Field(default=None, min_length=1)
    private_key: SecretStr | None = None
    key_id: str | None = Field(default=None, min_length=1)
    # Whether Deskgate may act (unlock, reset); off: it only reads (no okta.users.manage).
    manage: bool = True

    @property
    def base(self) -> str:
        return str(self.base_url).rstrip("/")

    @property
    def oauth(self) -> bool:
        return self.client_id is not None

    @property
    def scopes(self) -> tuple[str, ...]:
        """The OAuth scopes Deskgate asks for: what it uses, nothing more."""
        return (*READ_SCOPES, MANAGE_SCOPE) if self.manage else READ_SCOPES

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        # The org URL receives the API token or the bearer token on every call.
        if value.scheme != "https" and urlsplit(str(value)).hostname not in LOOPBACK:
            raise ValueError("must be https (http only on loopback, for the sandbox)")
        if urlsplit(str(value)).path not in ("", "/"):
            raise ValueError("must be the org URL alone, without a path (no /api/v1)")
        return value

    @field_validator("api_token", "private_key")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> OktaIdpConfig:
        token, app = self.api_token is not None, bool(self.client_id or self.private_key)
        if token == app:
            raise ValueError(
                "set exactly one credential: api_token, or client_id with private_key "
                "(an OAuth service app using private_key_jwt)"
            )
        if app and not (self.client_id and self.private_key):
            raise ValueError("client_id and private_key must be set together")
        if self.key_id and not app:
            raise ValueError("key_id belongs to client_id and private_key")
        if self.private_key is not None:
            _load_key(self.private_key.get_secret_value())
        return self


def _load_key(pem: str) -> None:
    """A private key the assertion can be signed with (RSA or EC P-256), or a clear error."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("private_key is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("private_key must be an RSA or EC (P-256) key")
