"""Shared fixtures: a clean environment, a dedicated Redis database, settings built in code."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.test import TestResponse

from config.settings import Settings
from connectors.registry import SETTINGS
from worker.audit.chain import Chain

# Tests own this Redis database and flush it; point DESKGATE_TEST_REDIS_URL elsewhere if needed.
TEST_REDIS_URL = os.environ.get("DESKGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# The audit chain for tests that build a ``Store`` without settings.
TEST_CHAIN = Chain([b"test-audit-chain-key"])

SECRETS = {
    "zendesk_token": "zd-api-token",
    "zendesk_push": "zd-push-signing-secret",
    "incode_webhook": "incode-hook-secret",
    "note": "note-sealing-secret",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from code in tests, never from the developer's shell."""
    for name in list(os.environ):
        if (
            name.startswith("DESKGATE_") and name != "DESKGATE_TEST_REDIS_URL"
        ) or name == "REDIS_URL":
            monkeypatch.delenv(name)


def settings_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "redis_url": TEST_REDIS_URL,
        "key_prefix": "dgtest",
        "note_secret": SECRETS["note"],
        "incode": {
            "api_url": "http://127.0.0.1:9",
            "auth_url": "http://127.0.0.1:9",
            "integration_reference": "ref-1",
            "client_id": "client-1",
            "client_secret": "client-secret",
            "api_key": "api-key",
            "executive_email": "admin@acme.test",
            "executive_password": "exec-password",
            "webhook_secret": SECRETS["incode_webhook"],
        },
        "desks": {
            "acme_zendesk": {
                "kind": "zendesk",
                "base_url": "http://127.0.0.1:9",
                "email": "agent@acme.test",
                "api_token": SECRETS["zendesk_token"],
                "webhook_secret": SECRETS["zendesk_push"],
                "triggers": {"idv_mfa_reset": "MFA reset"},
            }
        },
    }
    for key, value in overrides.items():
        data[key] = value
    return data


@pytest.fixture
def settings() -> Settings:
    return SETTINGS(**settings_data())


def queued(redis: Redis[str], queue: str = "deskgate") -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting on a queue, oldest first."""
    out = []
    for raw in reversed(redis.lrange(queue, 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return out


def json_body(resp: TestResponse) -> dict[str, Any]:
    """The JSON object an endpoint answered with (the test fails on any other body)."""
    body = resp.get_json(silent=True)
    assert isinstance(body, dict), resp.data
    return body


def sent_verification(redis: Redis[str], settings: Settings, interview_id: str = "iv-1") -> str:
    """Record a verification of ticket 42 whose link went out as Incode session ``interview_id``;
    returns its id."""
    from worker.lifecycle import State
    from worker.lifecycle.store import Store

    store = Store(redis, settings.key_prefix, 3600, chain=Chain.of(settings))
    v, _ = store.open(
        desk="acme_zendesk", ticket_id="42", ticket_display="#42", requester_id="7",
        reason="MFA reset", now=1000, resume_at=1100,
    )  # fmt: skip
    store.advance(v, State.SENT, 1001, interview_id=interview_id, index_interview=True)
    return v.id


def answering_redis() -> Redis[str]:
    """A client on the tests' Redis database. A test that needs one is skipped when none answers
    there, except under CI (``CI`` set, as CI services do), where that fails: a CI run never
    passes by skipping."""
    client: Redis[str] = Redis.from_url(
        TEST_REDIS_URL, decode_responses=True, socket_connect_timeout=2
    )
    try:
        client.ping()
    except RedisError as exc:
        client.close()
        reason = f"needs Redis at {TEST_REDIS_URL} (DESKGATE_TEST_REDIS_URL): {exc}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(reason)
        pytest.skip(reason)
    return client


@pytest.fixture
def redis() -> Iterator[Redis[str]]:
    client = answering_redis()
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
