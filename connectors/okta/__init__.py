"""Okta as an identity provider kind: ``config`` (its settings), ``connector`` (the
``IdentityProvider``), ``auth`` (API token or OAuth service app), ``log`` (reading the System
Log), ``doctor`` (read-only permission checks)."""

from connectors.idp_kind import IdpKind
from connectors.okta.config import OktaIdpConfig
from connectors.okta.connector import OktaConnector
from connectors.okta.doctor import doctor

KIND = IdpKind(config=OktaIdpConfig, connector=OktaConnector, doctor=doctor)
