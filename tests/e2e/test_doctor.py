"""``deskgate doctor`` on a real stack: healthy, it finds nothing wrong with the deployment and
Incode; each misconfiguration of the table, injected on its own into the simulators, Redis, the
running processes or doctor's configuration, is named as the right check with its fix.

The stack (``doctor_stack``, tests/e2e/conftest.py) is doctor's own, with beat, because rows stop
its worker and beat. Its healthy baseline: Redis with an RDB schedule (set by the fixture),
noeviction, a worker and beat running, ``public_url`` at its web app, the simulators' clocks
right. Every row restores what it changed before the next runs. Desk rows live in the desks' own
test files, through ``tests/doctoring.py``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from connectors.provisioning import Status
from sandbox.registry import DESKS
from sandbox.stack import Stack, free_port, wait_for
from tests.conftest import TEST_CHAIN
from tests.doctoring import Inject, Misconfig, assert_names, doctor_env, redis_config, run_doctor
from tests.e2e.conftest import E2E_REDIS_URL
from worker.lifecycle.store import Store

pytestmark = pytest.mark.e2e
MINE = ("redis", "worker", "beat", "web", "clock", "incode", "audit")


@contextlib.contextmanager
def _eviction(stack: Stack) -> Iterator[None]:
    with redis_config(stack, maxmemory_policy="allkeys-lru"):
        yield


@contextlib.contextmanager
def _no_persistence(stack: Stack) -> Iterator[None]:
    with redis_config(stack, save="", appendonly="no"):
        yield


ACL_USER, ACL_PASSWORD = "deskgate-doctor-no-config", "acl-password-0123456789"


@contextlib.contextmanager
def _config_refused(stack: Stack) -> Iterator[None]:
    """A managed Redis's restriction: every command but CONFIG (an ACL user of this Redis)."""
    stack.redis.acl_setuser(
        ACL_USER, enabled=True, passwords=[f"+{ACL_PASSWORD}"], keys=["*"], channels=["*"],
        categories=["+@all"], commands=["-config"],
    )  # fmt: skip
    try:
        yield
    finally:
        stack.redis.acl_deluser(ACL_USER)


@contextlib.contextmanager
def _config_refused_and_evicting(stack: Stack) -> Iterator[None]:
    with _config_refused(stack), _eviction(stack):
        yield


ACL_URL = E2E_REDIS_URL.replace("://", f"://{ACL_USER}:{ACL_PASSWORD}@")


@contextlib.contextmanager
def _worker_stopped(stack: Stack) -> Iterator[None]:
    stack.kill_worker()
    try:
        yield
    finally:
        stack.start_worker()


def _heartbeat(stack: Stack) -> Store:
    return Store(stack.redis, stack.options.key_prefix, 3600, chain=TEST_CHAIN)


@contextlib.contextmanager
def _beat_silent(stack: Stack) -> Iterator[None]:
    """Beat stopped an hour ago: no beat process, and its last sweep an hour old."""
    stack.children["beat"].stop()
    _heartbeat(stack).record_sweep(time.time() - 3600)
    try:
        yield
    finally:
        stack.start_beat()
        wait_for(lambda: (_heartbeat(stack).last_sweep() or 0) > time.time() - 5, 60, "a sweep")


def _incode_clock(seconds: float) -> Inject:
    @contextlib.contextmanager
    def skewed(stack: Stack) -> Iterator[None]:
        stack.skew_clock("incode", seconds)
        try:
            yield
        finally:
            stack.skew_clock("incode", 0)

    return skewed


WRONG = "wrong-secret-0123456789"
ROWS = [
    Misconfig("redis evicts keys", "redis", "eviction", "noeviction", inject=_eviction),
    Misconfig("redis persistence off", "redis", "persistence", "appendonly yes",
              inject=_no_persistence),
    Misconfig("redis refuses CONFIG (managed)", "redis", "persistence", "verify by hand",
              Status.WARN, inject=_config_refused, secrets=(ACL_PASSWORD,),
              env={"REDIS_URL": ACL_URL}),
    Misconfig("redis refuses CONFIG and evicts keys", "redis", "eviction", "noeviction",
              inject=_config_refused_and_evicting, secrets=(ACL_PASSWORD,),
              env={"REDIS_URL": ACL_URL}, detail="allkeys-lru"),  # read from INFO
    Misconfig("no worker", "worker", "ping", "start `deskgate worker`", inject=_worker_stopped),
    Misconfig("beat silent", "beat", "heartbeat", "`deskgate beat`", inject=_beat_silent),
    Misconfig("public_url unset", "web", "readyz", "set DESKGATE_PUBLIC_URL",
              env={"DESKGATE_PUBLIC_URL": None}),
    Misconfig("public_url points nowhere", "web", "readyz", "start `deskgate web`",
              env={"DESKGATE_PUBLIC_URL": f"http://127.0.0.1:{free_port()}"}),
    Misconfig("wrong incode client secret", "incode", "oauth token",
              "DESKGATE_INCODE__CLIENT_SECRET", env={"DESKGATE_INCODE__CLIENT_SECRET": WRONG}),
    Misconfig("wrong incode client id", "incode", "oauth token", "incode.client_id",
              env={"DESKGATE_INCODE__CLIENT_ID": "someone-else"}),
    Misconfig("wrong executive password", "incode", "executive token",
              "DESKGATE_INCODE__EXECUTIVE_PASSWORD",
              env={"DESKGATE_INCODE__EXECUTIVE_PASSWORD": WRONG}),
    Misconfig("wrong incode api key", "incode", "executive token", "DESKGATE_INCODE__API_KEY",
              env={"DESKGATE_INCODE__API_KEY": WRONG}),
    Misconfig("incode clock 10 min ahead", "clock", "incode", "NTP",
              inject=_incode_clock(600)),
    Misconfig("incode clock 1 min behind", "clock", "incode", "NTP", Status.WARN,
              inject=_incode_clock(-60)),
]  # fmt: skip


def test_healthy_stack_has_nothing_wrong(doctor_stack: Stack) -> None:
    report = run_doctor(doctor_stack, ping_timeout=3.0)  # the command's own wait
    assert report.with_status(Status.FAIL) == [], report.text
    mine = [c for c in report.checks if c["system"] in MINE]
    assert {c["system"] for c in mine} == set(MINE)
    # The stack forwards to no SIEM: the one warning, that the trail lives only in Redis.
    assert [c["system"] for c in mine if c["status"] != Status.OK.value] == ["audit"], report.text
    # every configured desk gets its kind's checks (or a warning that it has none)
    for kind in DESKS:
        assert any(c["system"] == f"{kind}:{doctor_stack.driver(kind).desk}" for c in report.checks)
    assert report.exit_status == 0
    assert report.summary["fail"] == 0 and report.summary["ok"] >= 10


@pytest.mark.parametrize("case", ROWS, ids=[row.id for row in ROWS])
def test_doctor_names_the_misconfiguration(doctor_stack: Stack, case: Misconfig) -> None:
    assert_names(doctor_stack, case)


@pytest.mark.parametrize("kind", DESKS)
def test_doctor_names_a_desk_clock_that_is_off(doctor_stack: Stack, kind: str) -> None:
    @contextlib.contextmanager
    def skewed(stack: Stack) -> Iterator[None]:
        stack.skew_clock(kind, -900)
        try:
            yield
        finally:
            stack.skew_clock(kind, 0)

    desk = doctor_stack.driver(kind).desk
    case = Misconfig(f"{kind} clock off", "clock", f"{kind}:{desk}", "NTP", inject=skewed)
    report = assert_names(doctor_stack, case)
    assert "900 s behind" in report.find("clock", f"{kind}:{desk}")["detail"]


def test_desk_option_limits_the_desks(doctor_stack: Stack) -> None:
    kind = DESKS[0]
    desk = doctor_stack.driver(kind).desk
    report = run_doctor(doctor_stack, desk=desk)
    desks = {c["system"] for c in report.checks if c["system"] not in MINE}
    assert desks == {f"{kind}:{desk}"}


def _command(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.commands.cli", "doctor", *args],
        env={**doctor_env(stack), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_prints_a_checklist_and_exits_by_it(doctor_stack: Stack) -> None:
    healthy = _command(doctor_stack)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "redis\n  ✓ answers: Redis" in healthy.stdout
    assert "\nincode\n  ✓ oauth token" in healthy.stdout
    assert healthy.stdout.rstrip().splitlines()[-1].startswith("no problems found: ")

    broken = _command(doctor_stack, "--json", DESKGATE_INCODE__CLIENT_SECRET=WRONG)
    assert broken.returncode == 1, broken.stderr
    data = json.loads(broken.stdout)
    assert data["exit_status"] == 1 and data["summary"]["fail"] == 1
    [failed] = [c for c in data["checks"] if c["status"] == "fail"]
    assert (failed["system"], failed["name"]) == ("incode", "oauth token")
    assert WRONG not in broken.stdout

    text = _command(doctor_stack, DESKGATE_INCODE__CLIENT_SECRET=WRONG)
    assert text.returncode == 1
    assert "  ✗ oauth token: Incode refused client sandbox-client" in text.stdout
    assert "      fix: set incode.client_id and DESKGATE_INCODE__CLIENT_SECRET" in text.stdout


def test_the_command_refuses_what_it_cannot_check(doctor_stack: Stack) -> None:
    unknown = _command(doctor_stack, "--desk", "nosuch")
    assert unknown.returncode == 2
    assert "no desk 'nosuch'" in unknown.stderr
    bad = _command(doctor_stack, DESKGATE_PUBLIC_URL="not a url")
    assert bad.returncode == 2
    assert "public_url" in bad.stderr
