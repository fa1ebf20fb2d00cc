"""A push secret rotated under the webhook app as `deskgate web` runs it (gunicorn): the new
secret in its file, the old one in the previous slot's, SIGHUP to the master; no restart."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from connectors.zendesk.push import sign
from sandbox.stack import Child, free_port, wait_for
from worker.commands.cli import gunicorn_args

OLD, NEW = "the-old-zendesk-push-secret", "the-new-zendesk-push-secret"
SECRET = "DESKGATE_DESKS__ACME_ZENDESK__WEBHOOK_SECRET"
PREVIOUS = "DESKGATE_DESKS__ACME_ZENDESK__WEBHOOK_PREVIOUS_SECRET"
ROOT = Path(__file__).parents[2]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[Child, str, dict[str, Path]]]:
    files = {SECRET: tmp_path / "push-secret", PREVIOUS: tmp_path / "push-previous-secret"}
    files[SECRET].write_text(OLD + "\n")
    files[PREVIOUS].write_text("")
    redis_url = os.environ.get("DESKGATE_E2E_REDIS_URL", "redis://127.0.0.1:6379/14")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DESKGATE_CONFIG": str(ROOT / "config" / "example.toml"),
        "DESKGATE_REDIS_URL": redis_url,
        "DESKGATE_KEY_PREFIX": "dgrotate",
        "DESKGATE_QUEUE": "deskgate-rotate",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **{f"{name}_FILE": str(path) for name, path in files.items()},
        **{
            f"DESKGATE_{name}": "x-long-enough-secret"
            for name in (
                "INCODE__CLIENT_SECRET",
                "INCODE__API_KEY",
                "INCODE__EXECUTIVE_PASSWORD",
                "INCODE__WEBHOOK_SECRET",
                "DESKS__ACME_ZENDESK__API_TOKEN",
                "DESKS__ACME_SERVICENOW__PASSWORD",
                "NOTE_SECRET",
            )
        },
    }
    url = f"http://127.0.0.1:{free_port()}"
    bind = url.removeprefix("http://")
    child = Child(
        "web", [sys.executable, *gunicorn_args(bind, workers=2)], env, tmp_path / "web.log"
    )
    try:
        wait_for(lambda: _ready(url), 30, "the webhook app to answer /readyz")
        yield child, url, files
    finally:
        child.stop()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


_tickets = iter(range(1, 1000))


def push(url: str, secret: str) -> int:
    body = json.dumps({"ticket_id": str(next(_tickets))}).encode()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "X-Zendesk-Webhook-Signature": sign(secret, stamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "Content-Type": "application/json",
    }
    try:
        answer = httpx.post(f"{url}/webhooks/zendesk", content=body, headers=headers, timeout=30)
    except httpx.HTTPError:  # a worker being replaced, on a loaded machine: asked again below
        return 0
    return answer.status_code


def test_sighup_takes_a_rotated_push_secret_and_the_old_one_overlaps(
    web: tuple[Child, str, dict[str, Path]],
) -> None:
    child, url, files = web
    assert push(url, OLD) == 200
    files[PREVIOUS].write_text(OLD)
    files[SECRET].write_text(NEW)
    master = child.proc.pid
    os.kill(master, signal.SIGHUP)  # gunicorn replaces its workers; they read the files anew
    wait_for(lambda: push(url, NEW) == 200, 30, "the new secret to be accepted")
    time.sleep(2)  # every old worker has stopped by now
    assert [push(url, NEW) for _ in range(6)] == [200] * 6  # whichever worker answers
    assert [push(url, OLD) for _ in range(6)] == [200] * 6  # the overlap
    assert child.proc.poll() is None and child.proc.pid == master  # no restart
