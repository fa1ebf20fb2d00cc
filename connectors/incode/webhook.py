"""Reading Incode's session webhooks: who sent them, which session, which event.

Incode documents no signature, only static custom headers set in its dashboard; we compare one
(``x-incode-secret`` by default) in constant time against the current and the previous secret.
Field names vary between tenants and doc versions (``eventType`` / ``event_type``, upper-case or
spaced values), so parsing is tolerant. The event is only a hint: the worker confirms the result
with Incode before writing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.secret_check import matches_any
from connectors.ticketing import HeaderLookup

# Events after which a result may be readable. Others (started, progress, enrolled, per-module
# onboarding statuses) are acknowledged and ignored.
RESULT_EVENTS = frozenset(
    {
        "SESSION_SUCCEEDED",
        "SESSION_FAILED",
        "SESSION_PENDING_REVIEW",
        "ONBOARDING_FINISHED",
        "MANUAL_REVIEW_APPROVED",
        "MANUAL_REVIEW_REJECTED",
    }
)


def authentic(headers: HeaderLookup, header: str, secrets: list[str]) -> bool:
    """``headers`` answers lower-cased names."""
    return matches_any(headers.get(header.lower(), ""), secrets)


def normalise(value: str) -> str:
    """``"Session Succeeded"``, ``"session-succeeded"`` and ``SESSION_SUCCEEDED`` are one event."""
    return "_".join(value.replace("-", " ").replace("_", " ").upper().split())


def event_of(payload: Mapping[str, Any]) -> str:
    """The session event, or the onboarding status for onboarding-status webhooks."""
    for key in ("eventType", "event_type", "event", "type"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return normalise(value)
    status = payload.get("onboardingStatus")
    return normalise(status) if isinstance(status, str) else ""


def interview_of(payload: Mapping[str, Any]) -> str:
    for key in ("interviewId", "interview_id", "sessionId"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""
