"""The web app's metrics: every delivery counted by endpoint and result, label values bounded
whatever a caller sends, and ``/metrics`` only for a bearer of ``metrics_token``."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY
from redis import Redis

from connectors.registry import SETTINGS
from tests.conftest import SECRETS, settings_data
from tests.unit.test_webhooks import zendesk_headers
from webhooks.app import create_app
from webhooks.metrics import outcomes

TOKEN = "metrics-token-for-the-tests"
SECRETS_HEADER = "x-incode-secret"


@pytest.fixture
def client(redis: Redis[str]) -> FlaskClient:
    return create_app(SETTINGS(**settings_data(metrics_token=TOKEN))).test_client()


def deliveries() -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["endpoint"], s.labels["result"], s.labels["reason"]): s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == "deskgate_webhook_deliveries_total"
    }


def change(before: dict[tuple[str, str, str], float]) -> dict[tuple[str, str, str], float]:
    after = deliveries()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_accepted_duplicate_and_refused_pushes_are_counted_by_result_and_reason(
    client: FlaskClient,
) -> None:
    before = deliveries()
    body = b'{"ticket_id": "42", "tags": "idv_mfa_reset"}'
    headers = zendesk_headers(body)
    assert client.post("/webhooks/zendesk", data=body, headers=headers).status_code == 200
    assert client.post("/webhooks/zendesk", data=body, headers=headers).status_code == 200
    own = b'{"ticket_id": "43"}'  # the desk's own endpoint counts as its kind's
    assert (
        client.post(
            "/webhooks/zendesk/acme_zendesk", data=own, headers=zendesk_headers(own)
        ).status_code
        == 200
    )
    bad = zendesk_headers(body, secret="not-the-secret-at-all")
    assert client.post("/webhooks/zendesk", data=body, headers=bad).status_code == 401
    incode = {SECRETS_HEADER: SECRETS["incode_webhook"], "Content-Type": "application/json"}
    assert client.post("/webhooks/incode", data=b"[1]", headers=incode).status_code == 400
    assert change(before) == {
        ("zendesk", "accepted", ""): 2,
        ("zendesk", "duplicate", ""): 1,
        ("zendesk", "refused", "unauthenticated"): 1,
        ("incode", "refused", "bad_request"): 1,
    }


def test_made_up_paths_and_kinds_add_no_label_values(client: FlaskClient) -> None:
    before = deliveries()
    for _ in range(50):
        word = secrets.token_hex(8)
        client.post(f"/webhooks/{word}", data=b"{}")
        client.post(f"/webhooks/zendesk/{word}", data=b"{}")
        client.get(f"/{word}")
    # A made-up desk at a kind's endpoint counts as the kind: the label values stay bounded.
    assert change(before) == {
        ("other", "refused", "not_found"): 50,
        ("zendesk", "refused", "not_found"): 50,
    }


def test_metrics_needs_the_token_and_serves_the_counts(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
    assert client.get("/metrics", headers=wrong).status_code == 401
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    names = {f.name for f in text_string_to_metric_families(resp.get_data(as_text=True))}
    assert "deskgate_webhook_deliveries" in names  # the parser drops _total


def test_during_a_rotation_the_previous_metrics_token_is_accepted_too(redis: Redis[str]) -> None:
    new = "a-new-metrics-token-after-rotation"
    data = settings_data(metrics_token=new, metrics_previous_token=TOKEN)
    client = create_app(SETTINGS(**data)).test_client()
    for token in (new, TOKEN):
        assert (
            client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
    wrong = {"Authorization": "Bearer " + "y" * len(TOKEN)}
    assert client.get("/metrics", headers=wrong).status_code == 401


def test_without_a_token_metrics_are_off(redis: Redis[str]) -> None:
    client = create_app(SETTINGS(**settings_data())).test_client()
    resp = client.get("/metrics")
    assert resp.status_code == 404
    assert "metrics_token" in resp.get_json()["reason"]


def test_a_short_metrics_token_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="metrics_token"):
        SETTINGS(**settings_data(metrics_token="short"))


# A process of its own: this one's registry already holds what earlier tests recorded.
FRESH_APP_SCRAPE = f"""
from connectors.registry import SETTINGS
from tests.conftest import settings_data
from webhooks.app import create_app
from webhooks.metrics import outcomes

client = create_app(SETTINGS(**settings_data(metrics_token={TOKEN!r}))).test_client()
page = client.get("/metrics", headers={{"Authorization": "Bearer {TOKEN}"}})
assert page.status_code == 200, page.status_code
print(page.get_data(as_text=True))
"""


def test_every_endpoint_and_outcome_is_served_at_zero_before_the_first_delivery() -> None:
    """Dashboards and ``absent()`` alerts saw no deliveries series until the first one came."""
    run = subprocess.run(
        [sys.executable, "-c", FRESH_APP_SCRAPE], capture_output=True, text=True, check=True
    )
    served = {
        (s.labels["endpoint"], s.labels["result"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(run.stdout)
        for s in family.samples
        if s.name == "deskgate_webhook_deliveries_total"
    }
    endpoints = ("zendesk", "servicenow", "incode", "incode_token", "other")
    for endpoint in endpoints:
        for result, reason in (("accepted", ""), ("duplicate", ""), ("refused", "unauthenticated")):
            assert served[(endpoint, result, reason)] == 0
    assert len(served) == len(endpoints) * len(outcomes()) and set(served.values()) == {0}
