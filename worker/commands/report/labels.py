"""Words for the report's readers: what each outcome means and what each error code says."""

from __future__ import annotations

from worker.audit import CODES

# What happened to a verification, for someone who never saw Deskgate.
STANDING = {
    "verified": "the employee passed Incode's identity check",
    "failed": "the employee took Incode's check and did not pass it",
    "expired": "no result before the link expired (or a manual review stayed undecided)",
    "error": "the check could not be done as asked; the ticket says why",
    "abandoned": "the ticket was deleted before a result",
    "open": "still waiting: the link is out or a person at Incode is reviewing it",
}

# The audit trail's codes, in words (worker/audit/__init__.py); an unknown code is shown as it is.
ERROR_CODES = {**CODES, "unknown": "no code recorded"}


def error_label(code: str) -> str:
    return ERROR_CODES.get(code, code)
