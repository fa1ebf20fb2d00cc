"""Words for the report's readers: what each outcome means and what each error code says."""

from __future__ import annotations

# What happened to a verification, for someone who never saw Deskgate.
STANDING = {
    "verified": "the employee passed Incode's identity check",
    "failed": "the employee took Incode's check and did not pass it",
    "expired": "no result before the link expired (or a manual review stayed undecided)",
    "error": "the check could not be done as asked; the ticket says why",
    "abandoned": "the ticket was deleted before a result",
    "open": "still waiting: the link is out or a person at Incode is reviewing it",
}

# The audit trail's error codes, in words. An unknown code is shown as it is.
ERROR_CODES = {
    "no_identity": "the requester has no e-mail or phone of record",
    "link_cap": "link cap hit: too many links for this requester or ticket within the hour",
    "refused_by_incode": "Incode refused the request (for example: employee not enrolled)",
    "requester_changed": "the ticket's requester changed after the link went out",
    "contact_too_new": "the requester's e-mail or phone of record changed too recently",
    "not_gated": "the ticket could not be put behind the gate",
    "ticket_refused": "the helpdesk refused Deskgate's writes",
    "unanswered": "Incode did not answer the request for a link in time",
    "unrecoverable": "a gate marker Deskgate could not trust (no sealed note of its own)",
    "unknown": "no code recorded",
}


def error_label(code: str) -> str:
    return ERROR_CODES.get(code, code)
