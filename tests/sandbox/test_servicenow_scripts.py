"""The ServiceNow simulator's script engine: the Glide shims behave as ServiceNow documents them,
and the business rule Deskgate ships signs what Deskgate's check accepts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request

from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.push import sign, verify_push
from connectors.servicenow.records import business_rule_script, rule_condition
from connectors.ticketing import PushAuth
from sandbox.common import Server, serve
from sandbox.servicenow import ServiceNowSimConfig, create_app
from sandbox.servicenow_scripts import Host, Outcome, mac, run

RECORD = {"sys_id": "a" * 32, "number": "INC0010001", "active": "true", "u_flag": "", "x": "1"}


def host(props: dict[str, str] | None = None, http: httpx.Client | None = None) -> Host:
    logged: list[tuple[str, str]] = []
    return Host(
        user="it.agent",
        property=(props or {}).get,
        log=lambda level, message: logged.append((level, message)),
        http=http,
    )


def evaluate(expression: str, record: dict[str, str], previous: dict[str, str] | None) -> Any:
    """The value of a JavaScript expression over ``current``/``previous``."""
    box = host()
    outcome = run(
        f"current.setValue('result', JSON.stringify({expression}));",
        host=box, table="incident", record=record, previous=previous, booleans=["active"],
    )  # fmt: skip
    return json.loads(outcome.values["result"])


def test_changes_and_changes_to_on_update_and_insert() -> None:
    before, after = RECORD, {**RECORD, "u_flag": "mfa_reset"}
    assert evaluate("current.u_flag.changes()", after, before) is True
    assert evaluate("current.u_flag.changesTo('mfa_reset')", after, before) is True
    assert evaluate("current.u_flag.changesTo('other')", after, before) is False
    assert evaluate("current.u_flag.changesFrom('')", after, before) is True
    assert evaluate("current.x.changes()", after, before) is False
    assert evaluate("current.u_flag.changes()", after, after) is False  # saved again unchanged
    # On insert there is no previous: a field "changes" when it has a value.
    assert evaluate("[current.u_flag.changes(), current.x.changes()]", RECORD, None) == [
        False,
        True,
    ]
    assert evaluate("current.isNewRecord()", RECORD, None) is True
    assert evaluate("previous.getValue('u_flag')", after, before) is None


def test_field_values_read_as_the_platform_gives_them() -> None:
    record = {**RECORD, "active": "false"}
    assert evaluate("current.getValue('u_flag')", record, None) is None  # empty is null
    assert evaluate("current.u_flag.nil()", record, None) is True
    assert evaluate("current.active == true", RECORD, None) is True
    assert evaluate("current.active == true", record, None) is False
    assert evaluate("current.number + ''", record, None) == "INC0010001"
    assert evaluate("[current.getUniqueValue(), current.getTableName()]", record, None) == [
        "a" * 32,
        "incident",
    ]


@pytest.mark.parametrize(
    ("key", "data", "algorithm", "digest"),
    [
        ("sample_key", "sample_data", "HmacSHA256", hashlib.sha256),
        ("ünïcode-kéy", '1800000000.{"a":"é"}', "HmacSHA256", hashlib.sha256),
        ("k", "", "HmacSHA1", hashlib.sha1),
    ],
)
def test_generate_mac_matches_hmac_with_the_decoded_key(
    key: str, data: str, algorithm: str, digest: Any
) -> None:
    expected = base64.b64encode(hmac.new(key.encode(), data.encode(), digest).digest()).decode()
    script = (
        "current.setValue('mac', new GlideCertificateEncryption().generateMac("
        f"GlideStringUtil.base64Encode({json.dumps(key)}), '{algorithm}', {json.dumps(data)}));"
    )
    outcome = run(script, host=host(), table="t", record={}, previous=None, booleans=[])
    assert outcome.values["mac"] == expected
    # The key is taken as base64, not as text: the raw key would give another MAC.
    assert mac(base64.b64encode(key.encode()).decode(), algorithm, data) == expected
    with pytest.raises(ValueError):
        mac(key + "!", algorithm, data)


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[Server, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    app = Flask("echo")

    @app.route("/echo", methods=["POST", "PUT"])
    def answer() -> Response:
        seen.append(
            {"method": request.method, "headers": dict(request.headers), "body": request.data}
        )
        return Response("pong", status=202, headers={"X-Reply": "yes"})

    srv = serve(app)
    yield srv, seen
    srv.stop()


def test_rest_message_execute_sends_a_real_request(
    echo: tuple[Server, list[dict[str, Any]]],
) -> None:
    srv, seen = echo
    seen.clear()
    script = f"""
        var r = new sn_ws.RESTMessageV2();
        r.setEndpoint('{srv.url}/echo');
        r.setHttpMethod('put');
        r.setRequestHeader('X-Test', 'one');
        r.setRequestBody('hello');
        var answer = r.execute();
        current.setValue('status', answer.getStatusCode());
        current.setValue('body', answer.getBody());
        current.setValue('header', answer.getHeader('X-Reply'));
    """
    with httpx.Client() as http:
        outcome = run(script, host=host(http=http), table="t", record={}, previous=None,
                      booleans=[])  # fmt: skip
    assert (outcome.values["status"], outcome.values["body"]) == ("202", "pong")
    assert outcome.values["header"] == "yes"
    assert len(seen) == 1
    assert (seen[0]["method"], seen[0]["body"]) == ("PUT", b"hello")
    assert seen[0]["headers"]["X-Test"] == "one"


def test_execute_async_is_sent_after_the_script_not_during_it() -> None:
    box = host()
    script = """var r = new sn_ws.RESTMessageV2(); r.setEndpoint('http://127.0.0.1:9/x');
                r.setHttpMethod('post'); r.setRequestBody('{}'); r.executeAsync();"""
    run(script, host=box, table="t", record={}, previous=None, booleans=[])
    assert [(o.method, o.url, o.body) for o in box.sent_later] == [
        ("POST", "http://127.0.0.1:9/x", "{}")
    ]


def test_a_throwing_script_is_logged_and_changes_nothing() -> None:
    logged: list[tuple[str, str]] = []
    box = Host(user="u", property=lambda name: None, log=lambda lv, msg: logged.append((lv, msg)))
    outcome = run("current.setValue('x', '2'); undefinedThing();", host=box, table="t",
                  record=RECORD, previous=None, booleans=[])  # fmt: skip
    assert outcome == Outcome(False, RECORD, False)
    assert logged and logged[0][0] == "error" and "undefinedThing" in logged[0][1]


def test_the_shipped_rule_signs_what_deskgate_accepts() -> None:
    secret = "a-secret-with-ünïcode-and-length"
    props = {"deskgate.incident.webhook_url": "http://deskgate/webhooks/servicenow/acme",
             "deskgate.incident.webhook_secret": secret}  # fmt: skip
    box = host(props)
    before = {**RECORD, "u_flag": ""}
    run(business_rule_script(), host=box, table="incident", record=RECORD, previous=before,
        booleans=["active"])  # fmt: skip
    [sent] = box.sent_later
    headers = {k.lower(): v for k, v in sent.headers.items()}
    body = sent.body.encode()
    assert headers["x-deskgate-signature"] == sign(secret, headers["x-deskgate-timestamp"], body)
    push = PushAuth(headers=headers, body=body, now=time.time(), tolerance_seconds=300)
    assert verify_push(push, [secret])
    assert not verify_push(push, ["another-secret-entirely"])
    assert json.loads(body)["sys_id"] == RECORD["sys_id"]


def test_a_before_rule_changes_the_record_it_saves() -> None:
    cfg = ServiceNowSimConfig()
    srv = serve(create_app(cfg))
    try:
        admin = (cfg.admin_username, cfg.admin_password)
        with httpx.Client(base_url=f"{srv.url}/api/now/table", auth=admin) as api:
            api.post(
                "/sys_script",
                json={"name": "stamp", "collection": "incident", "when": "before",
                      "active": True, "action_insert": True, "action_update": False,
                      "condition": "current.short_description.nil()",
                      "script": "current.short_description = 'from a rule';"},
            ).raise_for_status()  # fmt: skip
            stamped = api.post("/incident", json={}).json()["result"]
            kept = api.post("/incident", json={"short_description": "mine"}).json()["result"]
            assert stamped["short_description"] == "from a rule"
            assert kept["short_description"] == "mine"
    finally:
        srv.stop()


BOOLEANS = {**RECORD, "u_bool": "true"}


def evaluate_booleans(expression: str, record: dict[str, str]) -> Any:
    outcome = run(
        f"current.setValue('result', JSON.stringify({expression}));",
        host=host(), table="incident", record=record, previous=None,
        booleans=["active", "u_bool"],
    )  # fmt: skip
    return json.loads(outcome.values["result"])


def test_get_value_of_a_boolean_is_1_or_0_and_null_when_empty() -> None:
    # GlideRecord.getValue: a boolean reads "1"/"0"; an empty field is null.
    assert evaluate_booleans("current.getValue('u_bool')", BOOLEANS) == "1"
    assert evaluate_booleans("current.getValue('u_bool')", {**BOOLEANS, "u_bool": "false"}) == "0"
    assert evaluate_booleans("current.getValue('u_bool')", {**BOOLEANS, "u_bool": ""}) is None
    assert evaluate_booleans("current.getValue('u_flag')", BOOLEANS) is None
    assert evaluate_booleans("current.getValue('x')", BOOLEANS) == "1"  # a string "1" stays


def test_a_boolean_element_compares_and_prints_as_the_platform() -> None:
    # GlideElement: `current.active == true` holds for an active record; toString true/false.
    off = {**BOOLEANS, "active": "false", "u_bool": "false"}
    assert evaluate_booleans("[current.active == true, current.u_bool == true]", BOOLEANS) == [
        True,
        True,
    ]
    assert evaluate_booleans("[current.active == true, current.active == false]", off) == [
        False,
        True,
    ]
    assert evaluate_booleans("[current.active.toString(), current.u_bool + '']", off) == [
        "false",
        "false",
    ]
    assert evaluate_booleans("current.u_bool.nil()", off) is False  # false is a value, not nil


def test_changes_to_a_boolean_and_set_value_store_it_as_the_platform() -> None:
    before, after = {**BOOLEANS, "u_bool": "false"}, BOOLEANS
    outcome = run(
        "current.setValue('r', JSON.stringify([current.u_bool.changesTo(true), "
        "current.u_bool.changesFrom(false), current.u_bool.changesTo(false)]));"
        "current.setValue('u_bool', 0);",
        host=host(), table="incident", record=after, previous=before,
        booleans=["active", "u_bool"],
    )  # fmt: skip
    assert json.loads(outcome.values["r"]) == [True, True, False]
    assert outcome.values["u_bool"] == "false"  # setValue(0) on a boolean stores false


@pytest.mark.parametrize(
    ("triggers", "flag_value", "fires"),
    [
        ({"true": "identity verification"}, "true", True),  # the default: a boolean flag
        ({"true": "identity verification"}, "false", False),
        ({"mfa_reset": "MFA reset", "account_unlock": "account unlock"}, "mfa_reset", True),
        ({"mfa_reset": "MFA reset", "account_unlock": "account unlock"}, "other", False),
    ],
)
def test_the_rule_condition_setup_writes_fires_on_the_flag(
    triggers: dict[str, str], flag_value: str, fires: bool
) -> None:
    config = ServiceNowDeskConfig.model_validate(
        {"kind": "servicenow", "base_url": "https://acme.service-now.com", "username": "u",
         "password": "p", "flag_field": "u_flag", "triggers": triggers}
    )  # fmt: skip
    boolean = triggers == {"true": "identity verification"}
    before = {**RECORD, "u_flag": "false" if boolean else ""}
    outcome = run(
        "", host=host(), table="incident", record={**RECORD, "u_flag": flag_value},
        previous=before, booleans=["active", "u_flag"] if boolean else ["active"],
        condition=rule_condition(config),
    )  # fmt: skip
    assert outcome.ran is fires
