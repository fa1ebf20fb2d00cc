"""The SIEM simulator answers as Splunk's HTTP Event Collector documents, and checks the generic
endpoint's signature and timestamp, so the forwarder's tests meet a receiver that can refuse."""

from __future__ import annotations

import json
import time

from sandbox import siem

HEC = siem.HEC_PATH
AUTH = {"Authorization": f"Splunk {siem.TOKEN}"}


def test_hec_takes_concatenated_events_and_answers_success() -> None:
    client = siem.create_app().test_client()
    body = '{"event": {"id": "a"}}\n {"time": 1.5, "event": {"id": "b"}}'
    resp = client.post(HEC, data=body, headers=AUTH)
    assert (resp.status_code, resp.get_json()) == (200, {"text": "Success", "code": 0})
    got = client.get("/_sandbox/received").get_json()["events"]
    assert [e["id"] for e in got] == ["a", "b"] and got[1]["hec"]["time"] == 1.5


def test_hec_refusals_carry_its_codes() -> None:
    client = siem.create_app().test_client()
    cases = [
        ({}, '{"event": {}}', 401, 2),  # no token
        ({"Authorization": "Splunk wrong"}, '{"event": {}}', 401, 3),
        (AUTH, "{not json", 400, 6),
        (AUTH, "", 400, 5),
        (AUTH, '{"time": 1}', 400, 12),  # no event field
    ]
    for headers, body, status, code in cases:
        resp = client.post(HEC, data=body, headers=headers)
        assert (resp.status_code, resp.get_json()["code"]) == (status, code), body
    assert client.get("/_sandbox/received").get_json()["events"] == []


def test_down_answers_busy_until_it_is_up_again() -> None:
    client = siem.create_app().test_client()
    client.put("/_sandbox/down", json={"down": True})
    resp = client.post(HEC, data='{"event": {}}', headers=AUTH)
    assert (resp.status_code, resp.get_json()["code"]) == (503, 9)
    client.put("/_sandbox/down", json={"down": False})
    assert client.post(HEC, data='{"event": {}}', headers=AUTH).status_code == 200


def test_the_json_endpoint_checks_signature_and_timestamp() -> None:
    from connectors.audit_sink import signature

    client = siem.create_app().test_client()
    body = json.dumps([{"id": "a"}]).encode()

    def post(stamp: int, secret: str = siem.SECRET) -> int:
        headers = {
            "X-Deskgate-Timestamp": str(stamp),
            "X-Deskgate-Signature": signature(secret, str(stamp), body),
        }
        return client.post(siem.JSON_PATH, data=body, headers=headers).status_code

    now = int(time.time())
    assert post(now, "another-secret-0123456") == 401
    assert post(now - 600) == 401  # a replay, outside the window
    assert post(now) == 200
    assert [e["id"] for e in client.get("/_sandbox/received").get_json()["events"]] == ["a"]


def test_a_refusal_code_answers_every_batch_as_splunk_documents_it() -> None:
    client = siem.create_app().test_client()
    client.put("/_sandbox/refuse", json={"code": 7})
    resp = client.post(HEC, data='{"event": {"id": "a"}}', headers=AUTH)
    assert (resp.status_code, resp.get_json()) == (400, {"text": "Incorrect index", "code": 7})
    client.put("/_sandbox/refuse", json={"code": 10})
    resp = client.post(HEC, data='{"event": {"id": "a"}}', headers=AUTH)
    assert (resp.status_code, resp.get_json()["text"]) == (400, "Data channel is missing")
    assert client.put("/_sandbox/refuse", json={"code": 99}).status_code == 400
    assert client.post(HEC, data='{"event": {}}', headers={}).status_code == 401  # token first
    client.put("/_sandbox/refuse", json={"code": None})
    assert client.post(HEC, data='{"event": {"id": "a"}}', headers=AUTH).status_code == 200


def test_a_poison_event_is_refused_with_its_place_and_the_events_before_it_are_kept() -> None:
    client = siem.create_app().test_client()
    client.put("/_sandbox/poison", json={"ids": ["b"]})
    body = "".join(json.dumps({"event": {"id": i}}) for i in "abc")
    resp = client.post(HEC, data=body, headers=AUTH)
    assert resp.status_code == 400
    assert resp.get_json() == {"text": "Invalid data format", "code": 6, "invalid-event-number": 1}
    assert [e["id"] for e in client.get("/_sandbox/received").get_json()["events"]] == ["a"]
