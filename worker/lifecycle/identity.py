"""Who the link goes to: the loginHint and destination come from the requester's record in the
ticketing system, never from anything typed into the ticket; with an identity provider (IdP)
configured for the desk, from the IdP's record of the employee the requester is, instead."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from config.privacy import mask_email
from config.settings import DeskConfig
from connectors.http import Fatal
from connectors.identity_provider import ContactField, IdentityProvider, IdpUser
from connectors.ticketing import Person

T = TypeVar("T")


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


# -- with an identity provider ----------------------------------------------------------------


def idp_call(idp: IdentityProvider, call: Callable[[], T]) -> T:
    """``call`` to the IdP; its refusals (``AuthFailed``, ``Fatal``) become an ``Unverifiable``
    naming the IdP and the fix. ``Retriable`` and ``RateLimited`` pass: the task tries again
    (after the wait the IdP asked for)."""
    try:
        return call()
    except Fatal as exc:
        status = f"HTTP {exc.status}" if exc.status else "an error"
        raise Unverifiable(
            "idp_refused",
            f"the identity provider {idp.name!r} refused Deskgate's request ({status}); ask "
            "the IdP's admins to check Deskgate's credentials and permissions there "
            "(`deskgate doctor` names what is missing), then flag the ticket again",
        ) from None


def employee_of(idp: IdentityProvider, person: Person | None, desk: DeskConfig) -> IdpUser:
    """The IdP's user the desk's requester is: the requester's e-mail of record in the desk,
    compared with the IdP user's e-mail or login (``idp_match``)."""
    if person is None:
        raise Unverifiable(
            "no_requester", "the ticket has no requester whose identity could be verified"
        )
    if not person.email:
        raise Unverifiable(
            "no_identity",
            f"the requester's record has no e-mail address to find them in {idp.name!r} by; "
            "add it to the requester's profile",
        )
    user = idp_call(idp, lambda: idp.find_user(desk.idp_match, person.email or ""))
    if user is None:
        what = "e-mail address" if desk.idp_match == "email" else "login"
        raise Unverifiable(
            "idp_unknown",
            f"the identity provider {idp.name!r} has no user whose {what} is the requester's "
            f"e-mail address ({mask_email(person.email)}), so no link is sent; check that the "
            "ticket's requester is the employee",
        )
    return user


def of_record(
    idp_name: str, user: IdpUser, person: Person | None, desk: DeskConfig
) -> tuple[Identity, str]:
    """The login hint and destination from the IdP's record, and what the gate note adds about
    it (the employee is privileged; the desk's profile disagrees with the IdP: masked)."""
    # The policy comes first: a refused admin's verification is recorded as "refused" (the IdP
    # ledger), whatever else is wrong with the account.
    because = f" ({', '.join(user.privileged_because)})" if user.privileged_because else ""
    if user.privileged and desk.privileged_policy == "refuse":
        raise Unverifiable(
            "privileged_refused",
            f"the employee holds admin rights in {idp_name!r}{because}: helpdesk resets of "
            "administrators go through another process (your identity team's), not this one",
        )
    if not user.active:
        raise Unverifiable(
            "idp_inactive",
            f"the employee's account in {idp_name!r} is not active ({user.status}), so no link "
            "is sent; an inactive account is not reset through the helpdesk",
        )
    remarks = []
    if user.privileged:
        remarks.append(f"The employee holds admin rights in {idp_name!r}{because}.")
    desk_email = (person.email or "").strip() if person is not None else ""
    if desk_email and user.email and desk_email.lower() != user.email.strip().lower():
        remarks.append(
            f"The requester's e-mail in this desk ({mask_email(desk_email)}) differs from "
            f"{idp_name!r}'s record ({mask_email(user.email)}); the link goes to the IdP's record."
        )
    remark = " ".join(remarks)
    if desk.destination == "incode":
        return Identity(login_hint=user.login, destination=""), remark
    destination = user.email if desk.channel == "EMAIL" else user.phone
    if not destination:
        what = "e-mail address" if desk.channel == "EMAIL" else "phone number"
        raise Unverifiable(
            "no_destination",
            f"{idp_name!r} has no {what} of record for the employee to send the {desk.channel} "
            "link to; it must be added there",
        )
    return Identity(login_hint=user.login, destination=destination.strip()), remark


def idp_fields(desk: DeskConfig) -> dict[ContactField, str]:
    """The IdP user's fields whose age decides the outcome, as ``deciding_fields``'s roles."""
    roles: dict[ContactField, str] = {"login": "which names the employee to Incode"}
    if desk.destination == "desk":
        roles["email" if desk.channel == "EMAIL" else "phone"] = "which receives the link"
    return roles
