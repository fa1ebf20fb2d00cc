"""``deskgate doctor``'s verdicts: the beat and clock limits, a desk kind's own checks joining
the checklist, and the text and exit status people and scripts read. The checks against real
systems run in tests/e2e/test_doctor.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from redis import Redis

from connectors import registry
from connectors.provisioning import Check, DoctorRequest, Status
from connectors.registry import SETTINGS
from sandbox import okta as okta_sim
from sandbox.common import serve
from tests.conftest import TEST_CHAIN, settings_data
from worker.commands import doctor
from worker.commands.deployment_checks import (
    audit_sink_check,
    beat_check,
    clock_check,
    redis_checks,
)
from worker.lifecycle.store import Store

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("age", "interval", "status"),
    [(5, 1, Status.OK), (59, 1, Status.OK), (61, 1, Status.FAIL), (89, 30, Status.OK),
     (91, 30, Status.FAIL)],
)  # fmt: skip
def test_beat_is_silent_past_three_sweeps_and_never_under_a_minute(
    redis: Redis[str], age: float, interval: int, status: Status
) -> None:
    store = Store(redis, "dgtest", 3600, chain=TEST_CHAIN)
    store.record_sweep(NOW - age)
    assert beat_check(store, interval, NOW).status == status


def test_beat_that_never_swept_is_silent(redis: Redis[str]) -> None:
    check = beat_check(Store(redis, "dgtest", 3600, chain=TEST_CHAIN), 30, NOW)
    assert check.status == Status.FAIL and "`deskgate beat`" in check.fix


@pytest.mark.parametrize(
    ("skew", "status"),
    [(0.4, Status.OK), (-29, Status.OK), (31, Status.WARN), (-299, Status.WARN),
     (301, Status.FAIL), (-301, Status.FAIL)],
)  # fmt: skip
def test_clock_warns_past_a_tenth_of_the_tolerance_and_fails_past_it(
    skew: float, status: Status
) -> None:
    check = clock_check("incode", lambda: skew, 300)
    assert check.status == status
    if status != Status.OK:
        assert f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'}" in check.detail
        assert "NTP" in check.fix


def test_a_clock_that_cannot_be_read_is_a_warning() -> None:
    def unreadable() -> float:
        raise ValueError("http://x answered without a Date header")

    check = clock_check("incode", unreadable, 300)
    assert check.status == Status.WARN and "without a Date header" in check.detail


def _with_doctor(monkeypatch: pytest.MonkeyPatch, kind: str, run: Any) -> None:
    monkeypatch.setitem(registry.KINDS, kind, dataclasses.replace(registry.KINDS[kind], doctor=run))


def test_a_kinds_own_checks_join_the_checklist(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = SETTINGS(**settings_data(public_url="https://deskgate.example.com/"))
    asked: list[DoctorRequest[Any]] = []

    def zendesk_doctor(request: DoctorRequest[Any]) -> list[Check]:
        asked.append(request)
        return [Check("zendesk:acme_zendesk", "trigger", Status.FAIL, "inactive", "activate it")]

    _with_doctor(monkeypatch, "zendesk", zendesk_doctor)
    config = settings.desks["acme_zendesk"]
    checks = doctor.desk_checks("acme_zendesk", config, settings.public_base, 5.0, None)
    assert [c.name for c in checks] == ["trigger"]
    [request] = asked
    assert (request.desk, request.public_url) == ("acme_zendesk", "https://deskgate.example.com")
    assert request.config is config


def test_a_kind_without_checks_is_a_warning_not_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_doctor(monkeypatch, "zendesk", None)
    config = SETTINGS(**settings_data()).desks["acme_zendesk"]
    [check] = doctor.desk_checks("acme_zendesk", config, None, 5.0, None)
    assert (check.status, check.detail) == (Status.WARN, doctor.NO_DESK_CHECKS)


def test_a_kinds_checks_that_crash_are_a_failure_line_not_the_end(
    monkeypatch: pytest.MonkeyPatch, redis: Redis[str]
) -> None:
    def crashing(request: DoctorRequest[Any]) -> list[Check]:
        raise RuntimeError("unexpected answer for jane.doe@acme.test")

    _with_doctor(monkeypatch, "zendesk", crashing)
    checks = doctor.run(SETTINGS(**settings_data()), timeout=0.5, ping_timeout=0.2)
    [crash] = [c for c in checks if c.system == "zendesk:acme_zendesk"]
    assert crash.status == Status.FAIL
    assert crash.detail == "the checks stopped: RuntimeError: unexpected answer for j***@acme.test"
    assert {c.system for c in checks} >= {"redis", "worker", "beat", "web", "clock", "incode"}


def test_doctor_warns_when_no_siem_sink_keeps_a_copy_of_the_audit_trail() -> None:
    alone = audit_sink_check(SETTINGS(**settings_data()))
    assert (alone.system, alone.status) == ("audit", Status.WARN)
    assert "lives only in Redis" in alone.detail and "[audit_sink]" in alone.fix
    sink = {"url": "https://siem.acme.test:8088", "token": "hec-token-0123456789"}
    forwarded = audit_sink_check(SETTINGS(**settings_data(audit_sink=sink)))
    assert forwarded.status == Status.OK and "siem.acme.test" in forwarded.detail
    assert "hec-token" not in forwarded.detail
    marks = doctor.as_text([alone]).splitlines()
    assert marks[:2] == [
        "audit",
        "  ! siem sink: no audit_sink: the audit trail lives only in Redis",
    ]


def test_text_marks_each_check_and_gives_each_failure_its_fix() -> None:
    checks = [
        Check("redis", "answers", Status.OK, "Redis 7 at host:6379/0"),
        Check("redis", "eviction", Status.FAIL, "allkeys-lru", "set noeviction"),
        Check("clock", "incode", Status.WARN, "40 s ahead of this host", "use NTP"),
    ]
    assert doctor.as_text(checks).splitlines() == [
        "redis",
        "  ✓ answers: Redis 7 at host:6379/0",
        "  ✗ eviction: allkeys-lru",
        "      fix: set noeviction",
        "clock",
        "  ! incode: 40 s ahead of this host",
        "      check: use NTP",
        "problems found: 1 ok, 1 warning(s), 1 failed",
    ]
    assert doctor.exit_status(checks) == 1
    assert doctor.exit_status(checks[::2]) == 0  # warnings do not fail


def test_the_admin_from_the_environment_goes_only_to_the_desk_named(
    monkeypatch: pytest.MonkeyPatch, redis: Redis[str]
) -> None:
    """``DESKGATE_ADMIN_*`` is one desk's admin: a doctor run over every desk must not send it
    to the others' hosts, so only ``--desk`` hands it to that desk's checks."""
    asked: list[DoctorRequest[Any]] = []

    def recording(request: DoctorRequest[Any]) -> list[Check]:
        asked.append(request)
        return []

    _with_doctor(monkeypatch, "zendesk", recording)
    monkeypatch.setenv("DESKGATE_ADMIN_USER", "admin@acme.test")
    monkeypatch.setenv("DESKGATE_ADMIN_SECRET", "admin-api-token-0123")
    settings = SETTINGS(**settings_data())
    doctor.run(settings, timeout=0.5, ping_timeout=0.2)
    doctor.run(settings, "acme_zendesk", timeout=0.5, ping_timeout=0.2)
    everyone, named = asked
    assert everyone.admin is None
    assert named.admin is not None and named.admin.user == "admin@acme.test"


def test_doctor_shows_a_redis_url_without_its_credentials_even_in_a_clients_error() -> None:
    """The password in the query (redis-py reads ``?password=``) was printed with the host."""
    url = "redis://user:in-userinfo@127.0.0.1:1/3?password=in-query&socket_timeout=1"
    unreachable: Redis[str] = Redis.from_url(url, decode_responses=True, socket_connect_timeout=0.5)
    [answers] = redis_checks(unreachable, url)
    shown = f"{answers.detail} {answers.fix}"
    assert answers.status == Status.FAIL and "redis://127.0.0.1:1/3" in answers.detail
    assert "in-query" not in shown and "in-userinfo" not in shown and "user:" not in shown


def test_each_idp_proves_it_can_read_its_audit_log(redis: Redis[str]) -> None:
    """Bypass detection reads each IdP's log every minute: doctor proves the permission."""
    running = serve(okta_sim.create_app(okta_sim.OktaSimConfig()))
    try:
        idp = {
            "kind": "okta",
            "base_url": running.url,
            "api_token": okta_sim.OktaSimConfig.api_token,
        }
        settings = SETTINGS(**settings_data(idps={"acme_okta": idp}))
        checks = doctor.run(settings, timeout=2.0, ping_timeout=0.2)
        okta = {c.name: c.status for c in checks if c.system == "okta:acme_okta"}
        assert okta["read the System Log"] == Status.OK, okta
        one_desk = doctor.run(settings, "acme_zendesk", timeout=0.5, ping_timeout=0.2)
        assert not any(c.system.startswith("okta:") for c in one_desk)
    finally:
        running.stop()
