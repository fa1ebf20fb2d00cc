"""Metrics: audit events counted by ``observe``, outside calls against a simulator that answers
429, route templates and their bound, and the gauges the worker reads from Redis per scrape."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.registry import REGISTRY, CollectorRegistry
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import metrics
from connectors.http import RateLimited
from connectors.registry import SETTINGS
from connectors.zendesk.config import ZendeskDeskConfig
from connectors.zendesk.connector import ZendeskConnector
from sandbox import zendesk as sim
from sandbox.common import Server, serve
from tests.conftest import TEST_CHAIN, settings_data
from worker import metrics as worker_metrics
from worker.audit import forwarder as audit_forwarder
from worker.lifecycle import State
from worker.lifecycle.pace import Pace, PacedDesk
from worker.lifecycle.store import Store
from worker.metrics import StoreCollector

_ids = itertools.count(1)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A schema-1 audit event: every field present, "" (or null for times) where not given."""
    base: dict[str, Any] = {
        "schema": 1, "id": f"ev{next(_ids):030d}", "time": "2026-11-28T19:03:14.123Z",
        "event": kind, "desk": "m_desk", "ticket": "INC0010001", "verification": "v1",
        "session": "", "requester": "u1", "reason": "mfa_reset", "channel": "", "destination": "",
        "origin": "push", "state": "", "outcome": "", "code": "", "detail": "",
        "started_at": "2026-11-28T19:03:00.000Z", "sent_at": None, "state_at": None,
    }  # fmt: skip
    return {**base, **fields}


class Delta:
    """A sample's change across a block."""

    def __init__(self, name: str, **labels: str) -> None:
        self.name, self.labels = name, labels
        self.before = value(name, **labels)

    @property
    def change(self) -> float:
        return value(self.name, **self.labels) - self.before


# -- observe ---------------------------------------------------------------------------------


def test_a_lifecycle_of_events_counts_once_and_times_each_span() -> None:
    started = Delta("deskgate_verifications_started_total", desk="m_desk", reason="mfa_reset",
                    origin="push")  # fmt: skip
    verified = Delta("deskgate_verifications_finished_total", desk="m_desk", reason="mfa_reset",
                     outcome="verified")  # fmt: skip
    gate = Delta("deskgate_flag_to_gate_seconds_sum", desk="m_desk")
    gate_le_30 = Delta("deskgate_flag_to_gate_seconds_bucket", desk="m_desk", le="30.0")
    result = Delta("deskgate_gate_to_result_seconds_sum", desk="m_desk", result="verified")
    written = Delta("deskgate_result_to_written_seconds_sum", desk="m_desk", state="verified")
    outcome = Delta("deskgate_flag_to_outcome_seconds_sum", desk="m_desk", outcome="verified")
    writes = Delta("deskgate_ticket_writes_total", desk="m_desk", write="outcome", state="verified")
    sent_at = "2026-11-28T19:03:12.000Z"  # 12 s after the flag
    requested = event("verification.requested", state="requested")
    metrics.observe(requested)
    metrics.observe(requested)  # the same event delivered again: counted once
    metrics.observe(event("verification.sent", time=sent_at, sent_at=sent_at, state="sent"))
    metrics.observe(
        event("verification.verified", time="2026-11-28T19:05:12.000Z", sent_at=sent_at,
              state="verified", outcome="verified", state_at="2026-11-28T19:05:12.000Z")
    )  # fmt: skip
    metrics.observe(
        event("ticket.written", time="2026-11-28T19:05:12.500Z", code="outcome",
              state="verified", sent_at=sent_at, state_at="2026-11-28T19:05:12.000Z")
    )  # fmt: skip
    assert started.change == 1
    assert verified.change == 1
    assert gate.change == pytest.approx(12.0)
    assert gate_le_30.change == 1
    assert result.change == pytest.approx(120.0)
    assert written.change == pytest.approx(0.5)
    assert outcome.change == pytest.approx(132.5)
    assert writes.change == 1


def test_a_link_cap_is_an_error_outcome_and_a_cap_and_has_no_gate_to_result() -> None:
    caps = Delta("deskgate_link_caps_total", desk="m_desk", window="short")
    long_caps = Delta("deskgate_link_caps_total", desk="m_desk", window="long")
    errors = Delta("deskgate_verifications_finished_total", desk="m_desk", reason="mfa_reset",
                   outcome="error")  # fmt: skip
    results = Delta("deskgate_gate_to_result_seconds_count", desk="m_desk", result="error")
    metrics.observe(event("verification.error", state="error", outcome="error", code="link_cap"))
    metrics.observe(event("verification.error", state="error", outcome="error", code="no_identity"))
    metrics.observe(
        event("verification.error", state="error", outcome="error", code="link_cap_long")
    )
    assert caps.change == 1 and long_caps.change == 1
    assert errors.change == 3
    assert results.change == 0  # never sent: no sent_at


def test_recoveries_reviews_abandons_and_gate_writes_are_counted_and_nothing_else() -> None:
    recovered = Delta("deskgate_verifications_recovered_total", desk="m_desk")
    reviews = Delta("deskgate_verification_reviews_total", desk="m_desk", reason="mfa_reset")
    abandoned = Delta("deskgate_verifications_abandoned_total", desk="m_desk")
    gates = Delta("deskgate_ticket_writes_total", desk="m_desk", write="gate", state="sent")
    to_outcome = Delta("deskgate_flag_to_outcome_seconds_count", desk="m_desk", outcome="review")
    metrics.observe(event("verification.recovered", origin="recovery", state="sent"))
    metrics.observe(event("verification.review", state="review", sent_at="2026-11-28T19:03:05Z"))
    metrics.observe(event("verification.abandoned"))
    metrics.observe(event("ticket.written", code="gate", state="sent"))
    metrics.observe(event("ticket.written", code="outcome", state="review",
                          state_at="2026-11-28T19:03:10.000Z"))  # fmt: skip
    metrics.observe(event("verification.unheard_of"))
    metrics.observe(event("ticket.written", code="made_up", state="sent"))
    assert (recovered.change, reviews.change, abandoned.change, gates.change) == (1, 1, 1, 1)
    assert to_outcome.change == 0  # review is not an outcome


def test_each_bypass_counts_once_by_idp_severity_and_action() -> None:
    labels = {"idp": "m_okta", "action": "reset_mfa"}
    high = Delta("deskgate_idp_bypasses_total", severity="high", **labels)
    info = Delta("deskgate_idp_bypasses_total", severity="info", **labels)
    bypass = event("idp.bypass", code="high", severity="high", **labels)
    metrics.observe(bypass)
    metrics.observe(bypass)  # the same event again: counted once
    metrics.observe(event("idp.break_glass", code="break_glass", severity="info", **labels))
    assert (high.change, info.change) == (1, 1)


def test_observe_records_nothing_when_metrics_are_off() -> None:
    started = Delta("deskgate_verifications_started_total", desk="m_desk", reason="mfa_reset",
                    origin="poll")  # fmt: skip
    metrics.set_enabled(False)
    try:
        metrics.observe(event("verification.requested", origin="poll"))
    finally:
        metrics.set_enabled(True)
    assert started.change == 0


# -- routes and status classes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "route"),
    [
        ("/api/v2/tickets/123.json?include=users", "GET /api/v2/tickets/{id}.json"),
        ("/api/v2/users/9/identities.json", "GET /api/v2/users/{id}/identities.json"),
        ("/api/now/table/incident/0123456789abcdef0123456789abcdef",
         "GET /api/now/table/incident/{id}"),
        ("/omni/b2b/onboarding/request-new", "GET /omni/b2b/onboarding/request-new"),
        ("https://x.test/oauth2/token", "GET /oauth2/token"),
    ],
)  # fmt: skip
def test_routes_are_templates(url: str, route: str) -> None:
    assert metrics.route_of("t_routes", "get", url) == route


def test_a_system_never_has_more_routes_than_the_bound() -> None:
    routes = {metrics.route_of("t_bound", "GET", f"/x/{word}") for word in _words(200)}
    assert len(routes) == metrics.MAX_ROUTES + 1
    assert "other" in routes


def _words(n: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [letters[i % 26] + letters[(i // 26) % 26] + letters[(i // 676) % 26] for i in range(n)]


@pytest.mark.parametrize(
    ("status", "cls"), [(200, "2xx"), (302, "3xx"), (429, "4xx"), (503, "5xx"), (None, "error")]
)
def test_status_class(status: int | None, cls: str) -> None:
    assert metrics.status_class(status) == cls


# -- an outside call answered 429 ------------------------------------------------------------

SIM = sim.ZendeskSimConfig(triggers_enabled=False, user_age_days=30)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(SIM))
    yield running
    running.stop()


def test_a_429_from_the_simulator_is_counted_as_a_call_a_rate_limit_and_paused_time(
    server: Server, redis: Redis[str]
) -> None:
    httpx.post(f"{server.url}/_sandbox/reset").raise_for_status()
    data = settings_data()
    data["desks"]["acme_zendesk"].update(base_url=server.url, email=SIM.email,
                                         api_token=SIM.api_token)  # fmt: skip
    config = SETTINGS(**data).desks["acme_zendesk"]
    assert isinstance(config, ZendeskDeskConfig)
    desk = PacedDesk(ZendeskConnector("acme_zendesk", config, 5.0), Pace(redis, "dgmetrics"))
    route = "GET /tickets/{id}.json"  # relative to the desk's API base
    limited = Delta("deskgate_outside_requests_total", system="zendesk", route=route,
                    status_class="4xx")  # fmt: skip
    timed = Delta("deskgate_outside_request_duration_seconds_count", system="zendesk", route=route)
    told = Delta("deskgate_desk_rate_limited_total", desk="acme_zendesk")
    paused = Delta("deskgate_desk_paused_seconds_total", desk="acme_zendesk")
    fault = {"path_prefix": "/api/v2/tickets/", "status": 429, "retry_after": 5}
    httpx.post(f"{server.url}/_sandbox/faults", json=fault).raise_for_status()
    try:
        with pytest.raises(RateLimited):
            desk.get_ticket("1")
        with pytest.raises(RateLimited):  # held back by the cool-down: not sent, not counted
            desk.get_ticket("1")
    finally:
        httpx.delete(f"{server.url}/_sandbox/faults")
        redis.delete("dgmetrics:pace:acme_zendesk")
        desk.close()
    assert limited.change == 1
    assert timed.change == 1
    assert told.change == 1
    assert paused.change == 5  # Retry-After: 5, counted once


# -- gauges read from Redis ------------------------------------------------------------------


class FakeRuntime:
    """What the collector reads: the store, the Redis client, the settings."""

    def __init__(self, redis: Redis[str], prefix: str) -> None:
        self.settings = SETTINGS(**{**settings_data(), "key_prefix": prefix, "queue": prefix})
        self.redis = redis
        self.store = Store(redis, prefix, 3600, chain=TEST_CHAIN)


def samples(collector: StoreCollector) -> dict[tuple[str, tuple[str, ...]], float]:
    return {
        (s.name, tuple(s.labels.values())): s.value
        for family in collector.collect()
        for s in family.samples
    }


def test_open_verifications_their_oldest_age_the_queue_and_pauses_are_read_at_scrape(
    redis: Redis[str],
) -> None:
    rt = FakeRuntime(redis, "dgm")
    now = 10_000.0
    collector = StoreCollector(lambda: rt, lambda: now)
    opened = [
        rt.store.open(desk="acme_zendesk", ticket_id=str(i), ticket_display=f"#{i}",
                      requester_id="7", reason="MFA reset", now=now - 100 * i,
                      resume_at=now + 60)[0]
        for i in (1, 2, 3)
    ]  # fmt: skip
    rt.store.advance(opened[2], State.SENT, now - 50, due=now - 400, interview_id="iv9")
    finished = rt.store.advance(opened[1], State.SENT, now - 40, due=now + 30)
    rt.store.advance(finished, State.VERIFIED, now - 10)
    redis.rpush("dgm", "task-1", "task-2")
    Pace(redis, "dgm").hold("acme_zendesk", 30)
    got = samples(collector)
    assert got[("deskgate_store_up", ())] == 1
    assert got[("deskgate_open_verifications", ("requested",))] == 1
    assert got[("deskgate_open_verifications", ("sent",))] == 1
    assert got[("deskgate_open_verifications", ("review",))] == 0
    assert got[("deskgate_open_verification_oldest_age_seconds", ("requested",))] == 100
    assert got[("deskgate_open_verification_oldest_age_seconds", ("sent",))] == 50
    assert got[("deskgate_open_verification_oldest_age_seconds", ("review",))] == 0
    assert got[("deskgate_verifications_overdue", ())] == 1  # due 400 s ago
    assert got[("deskgate_queue_depth", ())] == 2
    assert 29 < got[("deskgate_desk_pause_remaining_seconds", ("acme_zendesk",))] <= 30
    rt.store.abandon(opened[2])
    assert samples(collector)[("deskgate_open_verifications", ("sent",))] == 0


def test_the_audit_trail_and_its_forwarding_to_the_siem_are_read_at_scrape(
    redis: Redis[str],
) -> None:
    """The stream's length always; with a SIEM configured, its lag, backlog and failures (the
    forwarder's own figures), so an alert sees a SIEM that stopped taking events."""
    rt = FakeRuntime(redis, "dgs")
    now = 10_000.0
    rt.store.open(desk="acme_zendesk", ticket_id="1", ticket_display="#1", requester_id="7",
                  reason="MFA reset", now=now, resume_at=now + 60)  # fmt: skip
    without = samples(StoreCollector(lambda: rt, lambda: now))
    assert without[("deskgate_audit_events", ())] == 1
    assert not any(name.startswith("deskgate_audit_sink") for name, _ in without)
    sink = {"url": "https://siem.acme.test/in", "format": "json_hmac", "secret": "s" * 16}
    rt.settings = SETTINGS(**{**settings_data(audit_sink=sink), "key_prefix": "dgs"})
    redis.hset(audit_forwarder.stats_key("dgs"), mapping={"failures": 3, "forwarded": 0})
    [(entry_id, _)] = redis.xrange("dgs:audit")
    later = int(entry_id.split("-")[0]) / 1000 + 42
    got = samples(StoreCollector(lambda: rt, lambda: later))
    assert got[("deskgate_audit_sink_unsent_events", ())] == 1
    assert 41 < got[("deskgate_audit_sink_lag_seconds", ())] <= 42
    assert got[("deskgate_audit_sink_failures_total", ())] == 3
    assert got[("deskgate_audit_sink_forwarded_events_total", ())] == 0
    assert got[("deskgate_audit_sink_refusing", ())] == 0
    assert got[("deskgate_audit_sink_set_aside_waiting_events", ())] == 0
    # The SIEM refuses on its configuration; one event was set aside for `audit resend`.
    redis.hset(audit_forwarder.stats_key("dgs"), "refusing", "HEC code 7: Incorrect index")
    redis.zadd(audit_forwarder.aside_key("dgs"), {entry_id: 1})
    got = samples(StoreCollector(lambda: rt, lambda: later))
    assert got[("deskgate_audit_sink_refusing", ())] == 1
    assert got[("deskgate_audit_sink_set_aside_waiting_events", ())] == 1


def test_registering_the_collector_reads_nothing_and_its_names_are_taken() -> None:
    def no_runtime() -> FakeRuntime:
        raise AssertionError("registering must not read Redis")

    registry = CollectorRegistry(auto_describe=True)
    registry.register(StoreCollector(no_runtime))
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(StoreCollector(no_runtime))


def test_a_forking_workers_multiprocess_directory_is_emptied_on_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"old counts")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    worker_metrics._on_init()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_scrape_with_redis_down_says_so_instead_of_failing() -> None:
    down: Redis[str] = Redis(port=1, decode_responses=True, retry=Retry(NoBackoff(), 0))
    rt = FakeRuntime(down, "dgm")
    got = samples(StoreCollector(lambda: rt, lambda: 0.0))
    assert got == {("deskgate_store_up", ()): 0}


def test_a_taken_metrics_port_is_logged_naming_the_settings_and_the_worker_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = SETTINGS(**settings_data(metrics_port=port))
        collectors = set(REGISTRY._collector_to_names)
        assert worker_metrics.serve(settings) is False
    assert "metrics_host:metrics_port" in capsys.readouterr().out
    assert set(REGISTRY._collector_to_names) == collectors  # nothing half set up
