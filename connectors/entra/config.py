"""A Microsoft Entra ID tenant's settings (``[idps.<name>]`` with ``kind = "entra"``)."""

from __future__ import annotations

import re
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator

from config.settings import IdpConfig

# The authentication method types ``reset_mfa`` may delete: Graph's ``{type}Methods`` segments
# (the password method cannot be deleted, so it is not one of them).
MethodType = Literal[
    "microsoftAuthenticator",
    "phone",
    "fido2",
    "softwareOath",
    "email",
    "windowsHelloForBusiness",
    "temporaryAccessPass",
]
METHOD_TYPES: frozenset[MethodType] = frozenset(
    {
        "microsoftAuthenticator",
        "phone",
        "fido2",
        "softwareOath",
        "email",
        "windowsHelloForBusiness",
        "temporaryAccessPass",
    }
)
GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class EntraIdpConfig(IdpConfig):
    """One Entra tenant, reached by Deskgate's own app registration with application
    permissions (``docs/idp.md``). The credential comes from the environment: a client secret,
    or a certificate's private key and its thumbprint; exactly one of the two."""

    kind: Literal["entra"]
    tenant_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$")  # GUID or domain
    client_id: str = Field(pattern=GUID)
    client_secret: SecretStr | None = None
    certificate_key: SecretStr | None = None  # the PEM private key of the uploaded certificate
    certificate_thumbprint: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{40}$")
    graph_url: AnyHttpUrl = AnyHttpUrl("https://graph.microsoft.com")
    login_url: AnyHttpUrl = AnyHttpUrl("https://login.microsoftonline.com")
    mfa_methods: frozenset[MethodType] = METHOD_TYPES
    # How far back each read of the audit log reaches before where the last one ended: entries
    # show up minutes late (Microsoft quoted 2 min p95, 5 min p99; field reports up to 15).
    log_overlap_seconds: int = Field(default=900, ge=1, le=86400)
    # How long the tenant keeps its audit log: 30 days with Entra ID P1/P2, 7 on Free.
    audit_retention_days: int = Field(default=30, ge=1, le=30)

    @field_validator("graph_url", "login_url")
    @classmethod
    def _https(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        # A bearer token and the directory's people must not cross a network in clear.
        if value.scheme != "https" and value.host not in LOOPBACK:
            raise ValueError("must be https:// (plain http only to a simulator on this host)")
        if value.username or value.password or value.query or value.fragment:
            raise ValueError("must not carry a user, password, query or fragment")
        return value

    @field_validator("certificate_key")
    @classmethod
    def _rsa_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                key = serialization.load_pem_private_key(
                    value.get_secret_value().encode(), password=None
                )
            except (ValueError, TypeError):
                raise ValueError("is not an unencrypted PEM private key") from None
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("must be an RSA key (Entra signs assertions with RS256)")
        return value

    @field_validator("client_secret")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> EntraIdpConfig:
        certificate = (self.certificate_key is not None, self.certificate_thumbprint is not None)
        if certificate[0] != certificate[1]:
            raise ValueError("certificate_key and certificate_thumbprint must be set together")
        if (self.client_secret is not None) == certificate[0]:
            raise ValueError(
                "set exactly one credential: client_secret, or certificate_key with "
                "certificate_thumbprint (in the environment)"
            )
        if not self.mfa_methods:
            raise ValueError("mfa_methods must name at least one method type")
        return self

    @property
    def graph_base(self) -> str:
        return str(self.graph_url).rstrip("/")

    @property
    def token_url(self) -> str:
        return f"{str(self.login_url).rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def thumbprint(self) -> bytes:
        return bytes.fromhex(re.sub(r"\s", "", self.certificate_thumbprint or ""))
