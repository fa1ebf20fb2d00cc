"""The Incode client against the Incode simulator (a real HTTP server): both tokens are cached and
refreshed once when Incode stops accepting them, request-new carries what each destination mode
says, and an unknown employee is typed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from config.settings import IncodeConfig
from connectors.http import Fatal
from connectors.incode import EmployeeNotFound, IncodeClient
from sandbox import incode as sim
from sandbox.common import Server, serve

SIM = sim.IncodeSimConfig(employees=frozenset({"jane@acme.test"}))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(SIM))
    yield running
    running.stop()


@pytest.fixture
def control(server: Server) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.url, timeout=10)
    client.post("/_sandbox/reset").raise_for_status()
    client.delete("/_sandbox/calls").raise_for_status()
    yield client
    client.close()


@pytest.fixture
def client(server: Server) -> Iterator[IncodeClient]:
    config = IncodeConfig.model_validate(
        {
            "api_url": server.url, "auth_url": server.url,
            "integration_reference": SIM.integration_reference, "client_id": SIM.client_id,
            "client_secret": SIM.client_secret, "api_key": SIM.api_key,
            "executive_email": SIM.executive_email,
            "executive_password": SIM.executive_password, "webhook_secret": SIM.webhook_secret,
        }
    )  # fmt: skip
    incode = IncodeClient(config, 5.0)
    yield incode
    incode.close()


def counts(control: httpx.Client) -> dict[str, int]:
    found: dict[str, int] = control.get("/_sandbox/calls").json()["counts"]
    return found


def ask(client: IncodeClient, destination: str | None = "jane@acme.test") -> str:
    session = client.request_new(
        login_hint="jane@acme.test", channel="EMAIL", destination=destination, validity_minutes=30
    )
    return session.interview_id


def test_both_tokens_are_cached_and_refreshed_once_after_incode_drops_them(
    control: httpx.Client, client: IncodeClient
) -> None:
    sessions = [ask(client) for _ in range(3)]
    for interview in sessions:
        assert client.confirm(interview).decision == "pending"
    assert counts(control)["POST /oauth2/token"] == 1
    assert counts(control)["POST /executive/log-in"] == 1

    control.post("/_sandbox/expire_tokens").raise_for_status()
    client.confirm(ask(client))
    assert counts(control)["POST /oauth2/token"] == 2  # the rejected one replaced once
    assert counts(control)["POST /executive/log-in"] == 2


def test_request_new_names_the_destination_only_when_deskgate_chooses_it(
    control: httpx.Client, client: IncodeClient
) -> None:
    ask(client)
    ask(client, destination=None)  # destination = "incode": Incode's own record
    made = control.get("/_sandbox/sessions").json()["sessions"]
    assert [s["notification"].get("email") for s in made] == ["jane@acme.test", None]
    assert {s["notification"]["type"] for s in made} == {"EMAIL"}


def test_an_unknown_employee_is_employee_not_found_not_a_plain_fatal(
    client: IncodeClient,
) -> None:
    with pytest.raises(EmployeeNotFound, match="4301") as raised:
        client.request_new(
            login_hint="nobody@acme.test", channel="EMAIL", destination="nobody@acme.test",
            validity_minutes=30,
        )  # fmt: skip
    assert isinstance(raised.value, Fatal) and raised.value.status == 400


def test_a_session_finishing_between_the_score_and_the_status_is_read_again(
    control: httpx.Client, client: IncodeClient
) -> None:
    """The score is read first (not scored yet), the employee finishes, then the status reads
    finished: without a second look that is "finished, score unknown", i.e. manual review."""
    interview = ask(client)
    status = client.onboarding_status

    def finishing_meanwhile(interview_id: str) -> str | None:
        control.post(f"/_sandbox/sessions/{interview_id}/complete", json={"outcome": "pass"})
        return status(interview_id)

    client.onboarding_status = finishing_meanwhile  # type: ignore[method-assign]
    result = client.confirm(interview)
    assert result.decision == "verified", result
