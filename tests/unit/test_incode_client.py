"""The Incode client against the Incode simulator (a real HTTP server): Omni's custom error code
through ``connectors.http.request``'s check, and both tokens replaced when Incode rejects them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from config.settings import IncodeConfig
from connectors.http import Fatal
from connectors.incode import EmployeeNotFound, IncodeClient
from sandbox import incode as sim
from sandbox.common import Server, serve

SIM = sim.IncodeSimConfig(employees=frozenset({"alice@acme.test"}))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(SIM))
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[IncodeClient]:
    httpx.post(f"{server.url}/_sandbox/reset", timeout=10).raise_for_status()
    config = IncodeConfig.model_validate(
        {
            "api_url": server.url,
            "auth_url": server.url,
            "integration_reference": SIM.integration_reference,
            "client_id": SIM.client_id,
            "client_secret": SIM.client_secret,
            "api_key": SIM.api_key,
            "executive_email": SIM.executive_email,
            "executive_password": SIM.executive_password,
            "webhook_secret": SIM.webhook_secret,
        }
    )
    incode = IncodeClient(config, timeout=5)
    yield incode
    incode.close()


def ask(incode: IncodeClient, login_hint: str = "alice@acme.test") -> str:
    session = incode.request_new(
        login_hint=login_hint, channel="EMAIL", destination=None, validity_minutes=30
    )
    return session.interview_id


def test_an_unknown_employee_is_employee_not_found_not_a_plain_fatal(
    client: IncodeClient,
) -> None:
    with pytest.raises(EmployeeNotFound, match="4301") as raised:
        ask(client, "nobody@acme.test")
    assert isinstance(raised.value, Fatal) and raised.value.status == 400


def test_a_token_incode_rejects_is_replaced_once_and_the_call_goes_through(
    client: IncodeClient, server: Server
) -> None:
    interview_id = ask(client)
    assert client.confirm(interview_id).decision == "pending"
    # Both tokens still look fresh to the client (hours left), but Incode no longer takes them.
    httpx.post(f"{server.url}/_sandbox/expire_tokens", timeout=10).raise_for_status()
    second = ask(client)  # the bearer: 401, one new token, the same call again
    assert second != interview_id
    assert client.confirm(second).decision == "pending"  # the executive token: likewise
