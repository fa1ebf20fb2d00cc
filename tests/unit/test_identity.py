"""The loginHint and destination come from the requester's record, as configured."""

from __future__ import annotations

import pytest

from connectors.registry import SETTINGS as Settings
from connectors.ticketing import Person
from tests.conftest import settings_data
from worker.lifecycle.identity import Unverifiable, identity_of

PERSON = Person(
    id="7",
    email="jane@acme.com",
    phone="+14155550100",
    external_id="E-1001",
    fields={"employee_id": "1001"},
)


def desk(**change: object) -> object:
    data = settings_data()
    data["desks"]["acme_zendesk"].update(change)
    return Settings(**data).desks["acme_zendesk"]


@pytest.mark.parametrize(
    ("source", "hint"),
    [("email", "jane@acme.com"), ("external_id", "E-1001"), ("user_field:employee_id", "1001")],
)
def test_login_hint_source(source: str, hint: str) -> None:
    who = identity_of(PERSON, desk(login_hint=source))  # type: ignore[arg-type]
    assert who.login_hint == hint
    assert who.destination == "jane@acme.com"


def test_sms_goes_to_the_phone_of_record() -> None:
    assert identity_of(PERSON, desk(channel="SMS")).destination == "+14155550100"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("person", "change", "message"),
    [
        (None, {}, "no requester"),
        (Person(id="1", email=None), {}, "no e-mail address"),
        (Person(id="1", email="a@b.co"), {"login_hint": "external_id"}, "no external id"),
        (Person(id="1", email="a@b.co"), {"channel": "SMS"}, "no phone number"),
        (PERSON, {"login_hint": "user_field:badge"}, "no user field badge"),
    ],
)
def test_given_a_record_missing_what_is_needed_then_unverifiable_with_a_reason(
    person: Person | None, change: dict[str, object], message: str
) -> None:
    with pytest.raises(Unverifiable, match=message):
        identity_of(person, desk(**change))  # type: ignore[arg-type]
