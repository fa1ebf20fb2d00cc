"""The vendors' payloads as their documentation shows them (``tests/fixtures/<vendor>/``), read by
the code that parses them: push bodies, webhook bodies and error bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.incode import client as incode
from connectors.incode.webhook import RESULT_EVENTS, event_of, interview_of
from connectors.servicenow import connector as servicenow_connector
from connectors.servicenow import push as servicenow_push
from connectors.zendesk import connector as zendesk_connector
from connectors.zendesk import push as zendesk_push

FIXTURES = Path(__file__).parents[1] / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def response(status: int, name: str) -> httpx.Response:
    return httpx.Response(status, json=load(name))


def test_the_zendesk_triggers_body_names_the_ticket() -> None:
    assert zendesk_push.pushed_ticket_ids(load("zendesk/trigger_webhook_body.json")) == ["35436"]


def test_the_servicenow_business_rules_body_names_the_record() -> None:
    body = load("servicenow/business_rule_push.json")
    assert servicenow_push.pushed_ticket_ids(body) == ["9d385017c611228701d22104cc95c371"]


@pytest.mark.parametrize(
    ("name", "event", "result"),
    [
        ("incode/webhook_session_succeeded.json", "SESSION_SUCCEEDED", True),
        ("incode/webhook_session_succeeded_spaced.json", "SESSION_SUCCEEDED", True),
        ("incode/webhook_onboarding_status.json", "MANUAL_REVIEW_APPROVED", True),
        ("incode/webhook_session_started.json", "SESSION_STARTED", False),
    ],
)
def test_incodes_webhooks_in_each_documented_shape(name: str, event: str, result: bool) -> None:
    body = load(name)
    assert interview_of(body) == "6580f0b2a1c4e5d6f7a8b9c0"
    assert event_of(body) == event
    assert (event in RESULT_EVENTS) is result


@pytest.mark.parametrize(
    ("status", "name", "reason"),
    [
        (404, "zendesk/error_record_not_found.json", "RecordNotFound: Not found"),
        (422, "zendesk/error_record_invalid.json", "RecordInvalid: Record validation errors"),
        (429, "zendesk/error_jsonapi.json", "TooManyRequests: You have exceeded the rate limit"),
        (409, "zendesk/error_update_conflict.json", "UpdateConflict: Safe Update prevented"),
    ],
)
def test_zendesk_error_bodies_in_both_shapes(status: int, name: str, reason: str) -> None:
    assert zendesk_connector.describe_error(response(status, name)).startswith(reason)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("servicenow/error_not_found.json", "No Record found: Record doesn't exist"),
        ("servicenow/error_acl.json", "Operation Failed: ACL Exception Update Failed"),
        ("servicenow/error_oauth.json", "access_denied"),
    ],
)
def test_servicenow_error_envelopes(name: str, reason: str) -> None:
    assert servicenow_connector.describe_error(response(403, name)).startswith(reason)


def test_omni_error_bodies_keep_the_message_and_the_custom_code() -> None:
    body = response(400, "incode/error_employee_not_found.json")
    assert incode.describe_error(body) == "Employee not found (code 4301)"
    assert (
        incode.describe_error(response(401, "incode/error_bad_credentials.json")) == "Unauthorized"
    )
