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


def field_name(field: str) -> str:
    """A requester field as agents read it: "e-mail address", "external id", "user field
    employee_id"."""
    if field in ("email", "phone"):
        return "e-mail address" if field == "email" else "phone number"
    if field == "external_id":
        return "external id"
    return field.replace("user_field:", "user field ")


def value_of(person: Person, field: str) -> str | None:
    """The requester's ``field`` (``email``, ``phone``, ``external_id``, ``user_field:<key>``)."""
    if field == "email":
        return person.email
    if field == "phone":
        return person.phone
    if field == "external_id":
        return person.external_id
    return person.fields.get(field.removeprefix("user_field:"))


def destination_field(desk: DeskConfig) -> str:
    return "email" if desk.channel == "EMAIL" else "phone"


def deciding_fields(desk: DeskConfig) -> dict[str, str]:
    """The requester's fields that decide whose identity is proven and who gets the link, each
    with its role: the login hint (whose Incode enrolment is matched) and, with ``destination =
    "desk"``, the e-mail or phone the link is sent to. Changing either "on the caller's word"
    changes the outcome, so both must be old enough."""
    roles = {desk.login_hint: "which names the employee to Incode"}
    if desk.destination == "desk":
        field = destination_field(desk)
        roles[field] = (
            f"{roles[field]} and receives the link"
            if field in roles
            else ("which receives the link")
        )
    return roles


def identity_of(person: Person | None, desk: DeskConfig) -> Identity:
    if person is None:
        raise Unverifiable(
            "no_requester", "the ticket has no requester whose identity could be verified"
        )
    hint = value_of(person, desk.login_hint)
    if not hint:
        raise Unverifiable(
            "no_identity",
            f"the requester's record has no {field_name(desk.login_hint).replace('_', ' ')}, "
            "which identifies the employee to Incode; add it to the requester's profile",
        )
    if desk.destination == "incode":
        return Identity(login_hint=hint.strip(), destination="")
    field = destination_field(desk)
    destination = value_of(person, field)
    if not destination:
        what = "email address" if field == "email" else "phone number"
        raise Unverifiable(
            "no_destination",
            f"the requester's record has no {what} to send the {desk.channel} link to; "
            "add it to the requester's profile",
        )
    return Identity(login_hint=hint.strip(), destination=destination.strip())
