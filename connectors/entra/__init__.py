"""Microsoft Entra ID as an identity provider kind: ``config`` (its settings), ``token`` (the
app-only Graph token), ``connector`` (the ``IdentityProvider``), ``audit`` (reading
``directoryAudits``) and ``doctor``."""

from connectors.entra.config import EntraIdpConfig
from connectors.entra.connector import EntraConnector
from connectors.entra.doctor import doctor
from connectors.idp_kind import IdpKind

KIND = IdpKind(config=EntraIdpConfig, connector=EntraConnector, doctor=doctor)
