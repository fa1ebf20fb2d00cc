"""doctor's ``pushes`` line for a ServiceNow desk: polls find flagged records while pushes
announce none, read from the audit trail, and the web app's count of unauthenticated (badly
signed) ServiceNow pushes, read from its real ``/metrics`` over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from redis import Redis

from connectors.provisioning import Check, Status
from connectors.registry import SETTINGS
from sandbox.common import Server, serve
from tests.conftest import settings_data
from webhooks.app import create_app
from worker import audit
from worker.commands.push_check import push_check, refused_pushes

TOKEN = "metrics-token-for-the-tests"
PREFIX = "dgtest"
SKEW = timedelta(seconds=1)  # the stream's ids are the Redis server's clock
SN_DESK = {
    "kind": "servicenow", "base_url": "http://127.0.0.1:9", "username": "deskgate.integration",
    "password": "sn-password", "webhook_secret": "a-servicenow-push-secret",
}  # fmt: skip


@pytest.fixture
def web(redis: Redis[str]) -> Iterator[Server]:
    data = settings_data(metrics_token=TOKEN)
    data["desks"] = {**data["desks"], "acme_sn": SN_DESK}
    server = serve(create_app(SETTINGS(**data)))
    yield server
    server.stop()


def requested(redis: Redis[str], desk: str, origin: str) -> None:
    """A ``verification.requested`` entry in the audit stream, as the store appends it."""
    redis.xadd(
        audit.stream_key(PREFIX),
        {"schema": "1", "event": "verification.requested", "desk": desk, "origin": origin},
    )


def test_polls_without_pushes_warn_and_name_the_encrypted_password2_case(
    redis: Redis[str],
) -> None:
    def check(refused: int | None) -> Check:
        return push_check(redis, PREFIX, "acme_sn", datetime.now(UTC) + SKEW, refused)

    assert check(None).status == Status.OK  # nothing yet
    requested(redis, "acme_sn", "poll")
    requested(redis, "acme_sn", "poll")
    requested(redis, "other_sn", "push")  # another desk's pushes say nothing of this one

    unknown = check(None)
    assert unknown.status == Status.WARN
    assert "polls found 2 flagged record(s) in the last day, pushes none" in unknown.detail
    assert "metrics_token" in unknown.fix and "password2" in unknown.fix
    refused = check(3)
    assert refused.status == Status.WARN
    assert "refused 3 ServiceNow push(es) as unauthenticated" in refused.detail
    assert "deskgate setup acme_sn --apply" in refused.fix
    assert "Outbound HTTP" in check(0).fix  # none arrived

    requested(redis, "acme_sn", "push")
    fine = check(3)
    assert (fine.status, fine.detail) == (Status.OK, "last day: 1 pushed, 2 found by polls")


def test_the_web_apps_refused_servicenow_pushes_are_read_from_its_metrics(web: Server) -> None:
    before = refused_pushes(web.url, TOKEN, "servicenow", 5.0)
    assert before is not None
    body = b'{"table": "incident", "sys_id": "0123456789abcdef0123456789abcdef"}'
    forged = {"Content-Type": "application/json", "X-Deskgate-Signature": "v1=" + "0" * 64}
    for _ in range(2):
        answer = httpx.post(f"{web.url}/webhooks/servicenow", content=body, headers=forged)
        assert answer.status_code == 401
    assert refused_pushes(web.url, TOKEN, "servicenow", 5.0) == before + 2
    assert refused_pushes(web.url, "not-the-token", "servicenow", 5.0) is None
    assert refused_pushes(web.url, None, "servicenow", 5.0) is None
    assert refused_pushes(None, TOKEN, "servicenow", 5.0) is None
