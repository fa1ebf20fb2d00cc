"""Rotating a secret without a restart: the web app re-reads its settings when their files
change (or on SIGHUP), the previous slot accepts the old secret during the overlap, and a bad
configuration on reload keeps the running one."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
from pathlib import Path

import pytest
import structlog
from flask.testing import FlaskClient
from redis import Redis
from structlog.testing import capture_logs

from connectors.registry import load_settings
from tests.conftest import TEST_REDIS_URL
from tests.unit.test_webhooks import zendesk_headers
from webhooks.app import create_app
from worker import runtime
from worker.live_settings import CHECK_SECONDS, LiveSettings
from worker.runtime import install_reload_signal

OLD, NEW = "the-old-zendesk-push-secret", "the-new-zendesk-push-secret"
_tickets = iter(range(1, 1000))
SECRET = "DESKGATE_DESKS__ACME_ZENDESK__WEBHOOK_SECRET"
PREVIOUS = "DESKGATE_DESKS__ACME_ZENDESK__WEBHOOK_PREVIOUS_SECRET"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """``config/example.toml``, the push secret and its previous slot in files (the previous
    one empty: no rotation under way), everything else in the environment."""
    monkeypatch.setenv("DESKGATE_CONFIG", str(Path(__file__).parents[2] / "config/example.toml"))
    monkeypatch.setenv("DESKGATE_REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("DESKGATE_KEY_PREFIX", "dgtest")
    for name in (
        "INCODE__CLIENT_SECRET",
        "INCODE__API_KEY",
        "INCODE__EXECUTIVE_PASSWORD",
        "INCODE__WEBHOOK_SECRET",
        "DESKS__ACME_ZENDESK__API_TOKEN",
        "DESKS__ACME_SERVICENOW__PASSWORD",
        "NOTE_SECRET",
    ):
        monkeypatch.setenv(f"DESKGATE_{name}", "x-long-enough-secret")
    paths = {SECRET: tmp_path / "push-secret", PREVIOUS: tmp_path / "push-previous-secret"}
    paths[SECRET].write_text(OLD + "\n")
    paths[PREVIOUS].write_text("")
    for variable, path in paths.items():
        monkeypatch.setenv(f"{variable}_FILE", str(path))
    return paths


def push(client: FlaskClient, secret: str) -> int:
    """A push for a new ticket each time (one body would be a duplicate, answered 200 too)."""
    body = json.dumps({"ticket_id": str(next(_tickets))}).encode()
    headers = zendesk_headers(body, secret)
    return client.post("/webhooks/zendesk", data=body, headers=headers).status_code


def rotate(files: dict[str, Path]) -> None:
    """Step one of the procedure: the new secret in, the old one into the previous slot."""
    files[PREVIOUS].write_text(OLD)
    files[SECRET].write_text(NEW)


def test_a_rotated_push_secret_is_taken_without_a_restart_and_the_old_one_overlaps(
    files: dict[str, Path], redis: Redis[str]
) -> None:
    clock = Clock()
    client = create_app(LiveSettings(load_settings, clock=clock)).test_client()
    assert push(client, OLD) == 200
    rotate(files)
    assert push(client, NEW) == 401  # not looked at yet: files are checked every CHECK_SECONDS
    clock.now += CHECK_SECONDS
    with capture_logs() as logs:
        assert push(client, NEW) == 200
    assert logs[0]["event"] == "settings reloaded"
    assert push(client, OLD) == 200  # the overlap: the desk may still sign with the old one
    files[PREVIOUS].write_text("")  # the desk has moved over: the overlap ends
    clock.now += CHECK_SECONDS
    assert push(client, OLD) == 401
    assert push(client, NEW) == 200


def test_a_configuration_that_fails_on_reload_keeps_the_running_one(
    files: dict[str, Path], redis: Redis[str]
) -> None:
    clock = Clock()
    client = create_app(LiveSettings(load_settings, clock=clock)).test_client()
    files[SECRET].write_text("too-short")
    clock.now += CHECK_SECONDS
    with capture_logs() as logs:
        assert push(client, OLD) == 200
    refused = logs[0]
    assert refused["log_level"] == "error"
    assert "keeping the running configuration" in refused["event"]
    assert "desks.acme_zendesk.webhook_secret" in refused["error"]
    assert "too-short" not in str(refused)  # the error names the field, never the value


def test_sighup_reloads_at_once(files: dict[str, Path], redis: Redis[str]) -> None:
    live = LiveSettings(load_settings, clock=Clock())
    client = create_app(live).test_client()
    before = signal.getsignal(signal.SIGHUP)
    try:
        install_reload_signal(live)
        rotate(files)
        os.kill(os.getpid(), signal.SIGHUP)
        assert push(client, NEW) == 200  # no time passed: the signal asked for it
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_reload_keeps_logging_on_the_stream_it_started_with(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Celery worker replaces sys.stdout with a proxy into logging once it has started: a
    reload that configured logging onto it lost every line after it (found on a real worker)."""
    started, proxy = io.StringIO(), io.StringIO()
    monkeypatch.setattr(runtime, "_logging", {})
    monkeypatch.setattr(sys, "stdout", started)
    live = LiveSettings(load_settings, clock=Clock(), on_change=runtime._configured)
    try:
        runtime._configured(live.get())
        monkeypatch.setattr(sys, "stdout", proxy)
        live.request_reload()
        live.get()
        structlog.get_logger("deskgate.test").warning("after the reload")
        assert "after the reload" in started.getvalue()
        assert proxy.getvalue() == ""
    finally:  # the root handler configure_logging added comes off (as test_privacy.py does)
        root = logging.getLogger()
        for handler in [h for h in root.handlers if type(h).__name__ == "_RedactingHandler"]:
            root.removeHandler(handler)
        logging.captureWarnings(False)
        structlog.reset_defaults()  # later tests print through structlog's own default
