"""What ``deskgate setup`` and ``deskgate doctor`` exchange with each desk kind (and Incode).

A kind's ``setup`` finds each object it needs by name, creates it if missing and updates it only
where it differs, and says so per object (``Change``); with ``dry_run`` it says the same without
writing. A kind's ``doctor`` reads the desk and reports ``Check`` lines, each failure with the fix
in one sentence. Both live with the kind's connector (``connectors/<kind>/setup.py``,
``connectors/<kind>/doctor.py``); ``worker/commands/cli.py`` only prints what they return.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import SecretStr

from config.settings import DeskConfig

C = TypeVar("C", bound=DeskConfig)

# Where ``setup`` and ``doctor`` find the desk's admin when the command line does not name it.
ADMIN_USER_ENV = "DESKGATE_ADMIN_USER"
ADMIN_SECRET_ENV = "DESKGATE_ADMIN_SECRET"  # noqa: S105 (a variable's name)


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    WRITE = "write"  # a file or secret written where the operator said (update set, env file)
    MANUAL = "manual"  # a step an admin must take by hand (no API for it); ``detail`` says how


@dataclass(frozen=True)
class Change:
    """One object ``setup`` looked at: what it is, its name, and what was (or would be) done."""

    kind: str  # "webhook", "trigger", "macro", "business rule", ...
    name: str
    action: Action
    detail: str = ""  # never a secret in full


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One line of ``doctor``'s checklist. A failure names its fix in one sentence."""

    system: str  # "zendesk:<desk>", "servicenow:<desk>", "incode", "redis", "worker", ...
    name: str
    status: Status
    detail: str = ""
    fix: str = ""


@dataclass(frozen=True)
class AdminCredential:
    """The admin account ``setup`` uses (never Deskgate's everyday API user): a user name (or
    e-mail) and its password or API token, from the command line or the environment."""

    user: str
    secret: SecretStr

    @classmethod
    def given(
        cls, user: str | None = None, secret_file: Path | None = None
    ) -> AdminCredential | None:
        """The admin named on the command line, else in the environment; None if incomplete."""
        user = user or os.environ.get(ADMIN_USER_ENV, "")
        if secret_file is not None:
            secret = secret_file.read_text().strip()
        else:
            secret = os.environ.get(ADMIN_SECRET_ENV, "").strip()
        return cls(user=user, secret=SecretStr(secret)) if user and secret else None


@dataclass(frozen=True)
class SetupRequest(Generic[C]):
    desk: str  # the desk's name in Deskgate's config
    config: C
    public_url: str  # where Deskgate's web app is reached, without a trailing slash
    admin: AdminCredential | None  # None only for outputs that need no desk access
    dry_run: bool = False
    apply: bool = True  # ServiceNow: False writes only the update set file
    update_set: Path | None = None  # ServiceNow: where the update set XML goes
    # Stores a secret setup obtained (e.g. Zendesk's webhook signing secret) where the operator
    # said: the env var name and its value. None: print where to put it, masked.
    store_secret: Callable[[str, str], str] | None = None
    timeout: float = 10.0
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorRequest(Generic[C]):
    desk: str
    config: C
    public_url: str | None
    timeout: float = 10.0
    # Some objects only an admin may read (Zendesk's webhooks and their signing secrets); None:
    # those checks say they were skipped and why.
    admin: AdminCredential | None = None


# SetupRequest.options: "1" resets the webhook's signing secret before storing it (rotation).
ROTATE_SECRET = "rotate_secret"  # noqa: S105 (an option's name)


class ProvisioningError(Exception):
    """``setup`` cannot go on (a refused admin credential, an object it cannot reconcile); the
    message says why and what to do, never a secret."""


def fingerprint(secret: str) -> str:
    """16 hex characters of HMAC-SHA256(secret, a fixed text): tells two values apart (the same
    secret always gives the same one) and shows nothing of the secret."""
    mac = hmac.new(secret.encode(), b"deskgate secret fingerprint", hashlib.sha256)
    return mac.hexdigest()[:16]


def mask_secret(value: str) -> str:
    """A secret as setup and doctor show it: its length and its fingerprint."""
    if len(value) < 16:
        return "(too short)"
    return f"{len(value)} characters, fingerprint {fingerprint(value)}"
