"""Two ServiceNow desks on one instance (a table each): `deskgate setup` gives each its own
endpoint and secret property, the shipped business rule pushes each record to its own desk's
endpoint, and Deskgate's web app checks a push there with that desk's secret only."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr
from redis import Redis

from connectors.provisioning import AdminCredential, SetupRequest
from connectors.registry import SETTINGS
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.push import sign
from connectors.servicenow.setup import setup
from sandbox.common import Server, serve
from sandbox.servicenow import ServiceNowSimConfig
from sandbox.servicenow import create_app as servicenow_app
from tests.conftest import queued, settings_data
from webhooks.app import create_app
from worker.dispatch import START_VERIFICATION

SIM = ServiceNowSimConfig()
SECRETS = {"it_sn": "it-desk-push-secret-0001", "hr_sn": "hr-desk-push-secret-0002"}
TABLES = {"it_sn": "incident", "hr_sn": "sc_req_item"}
REQUESTER = {"incident": "caller_id", "sc_req_item": "requested_for"}


def desks(base_url: str) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "kind": "servicenow", "base_url": base_url, "username": SIM.username,
            "password": SIM.password, "table": TABLES[name],
            "requester_field": REQUESTER[TABLES[name]], "webhook_secret": SECRETS[name],
        }
        for name in SECRETS
    }  # fmt: skip


@pytest.fixture
def instance() -> Iterator[Server]:
    srv = serve(servicenow_app(SIM))
    yield srv
    srv.stop()


@pytest.fixture
def deskgate(instance: Server, redis: Redis[str]) -> Iterator[Server]:
    data = settings_data()
    data["desks"] = desks(instance.url)
    srv = serve(create_app(SETTINGS(**data)))
    yield srv
    srv.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_desks_on_one_instance_each_push_to_their_own_desk(
    instance: Server, deskgate: Server, redis: Redis[str]
) -> None:
    admin = AdminCredential(SIM.admin_username, SecretStr(SIM.admin_password))
    for name, values in desks(instance.url).items():
        config = ServiceNowDeskConfig.model_validate(values)
        setup(SetupRequest(desk=name, config=config, public_url=deskgate.url, admin=admin))
    flagged: dict[str, str] = {}
    with httpx.Client(
        base_url=f"{instance.url}/api/now/table", auth=(SIM.username, SIM.password)
    ) as api:
        for name, table in TABLES.items():
            record = api.post(f"/{table}", json={"short_description": "reset MFA"}).json()
            sys_id = record["result"]["sys_id"]
            api.patch(f"/{table}/{sys_id}", json={"u_idv_required": True}).raise_for_status()
            flagged[name] = sys_id
    wait_for(lambda: len(queued(redis)) == 2)
    assert sorted(queued(redis)) == sorted(
        (START_VERIFICATION, [name, sys_id, "push"]) for name, sys_id in flagged.items()
    )


BODY = b'{"table": "incident", "sys_id": "0123456789abcdef0123456789abcdef"}'


@pytest.fixture
def client(redis: Redis[str]) -> FlaskClient:
    data = settings_data()
    data["desks"] = {**data["desks"], **desks("http://127.0.0.1:9")}
    return create_app(SETTINGS(**data)).test_client()


def signed(secret: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"X-Deskgate-Timestamp": stamp, "X-Deskgate-Signature": sign(secret, stamp, BODY)}


def test_a_push_signed_with_one_desks_secret_is_refused_at_the_other_desks_endpoint(
    client: FlaskClient, redis: Redis[str]
) -> None:
    refused = client.post("/webhooks/servicenow/hr_sn", data=BODY, headers=signed(SECRETS["it_sn"]))
    assert refused.status_code == 401
    assert queued(redis) == []
    taken = client.post("/webhooks/servicenow/it_sn", data=BODY, headers=signed(SECRETS["it_sn"]))
    assert taken.status_code == 200
    assert [args[0] for _, args in queued(redis)] == ["it_sn"]


def test_an_endpoint_for_a_desk_that_is_not_there_or_of_another_kind_is_404(
    client: FlaskClient,
) -> None:
    headers = signed(SECRETS["it_sn"])
    for path in ("/webhooks/servicenow/nobody", "/webhooks/servicenow/acme_zendesk"):
        answer = client.post(path, data=BODY, headers=headers)
        assert answer.status_code == 404
        assert "no servicenow desk" in answer.get_json()["reason"]
