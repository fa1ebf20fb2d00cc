"""Who the link goes to: the loginHint and destination come from the requester's record in the
ticketing system, never from anything typed into the ticket."""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import DeskConfig
from connectors.ticketing import Person


class Unverifiable(Exception):
    """The requester cannot be verified as configured; the message tells an agent what to fix,
    ``code`` names the reason for machines (the audit trail)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Identity:
    login_hint: str
    destination: str  # email for EMAIL, phone for SMS; "" when Incode delivers to its own record


def identity_of(person: Person | None, desk: DeskConfig) -> Identity:
    if person is None:
        raise Unverifiable(
            "no_requester", "the ticket has no requester whose identity could be verified"
        )
    source = desk.login_hint
    if source == "email":
        hint = person.email
    elif source == "external_id":
        hint = person.external_id
    else:
        hint = person.fields.get(source.removeprefix("user_field:"))
    if not hint:
        what = source.replace("user_field:", "user field ")
        raise Unverifiable(
            "no_identity",
            f"the requester's record has no {what.replace('_', ' ')}, which identifies the "
            "employee to Incode; add it to the requester's profile",
        )
    if desk.destination == "incode":
        return Identity(login_hint=hint.strip(), destination="")
    if desk.channel == "EMAIL":
        destination, what = person.email, "email address"
    else:
        destination, what = person.phone, "phone number"
    if not destination:
        raise Unverifiable(
            "no_destination",
            f"the requester's record has no {what} to send the {desk.channel} link to; "
            "add it to the requester's profile",
        )
    return Identity(login_hint=hint.strip(), destination=destination.strip())
