"""Forwarding the audit trail against the SIEM simulator (a real HTTP server): acknowledged only
after a 2xx, sent again (the same events, the same ids) after a failure, a dead forwarder's
batch claimed by another, the signed-JSON format verified by the receiver, and the figures the
metrics read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import flask
import httpx
import pytest
from pydantic import SecretStr
from redis import Redis

from config.settings import AuditSinkConfig, ConfigError
from connectors.audit_sink import AuditSink, ContentRefused, Misconfigured, signature
from connectors.http import AuthFailed, Fatal, Retriable
from sandbox import siem
from sandbox.common import Server, serve
from tests.conftest import TEST_CHAIN, settings_data
from worker import audit
from worker.audit import forwarder as audit_forwarder
from worker.audit.forwarder import Forwarder
from worker.lifecycle import State
from worker.lifecycle.store import Store

PREFIX = "dgtest"


@pytest.fixture
def intake() -> Iterator[Server]:
    server = serve(siem.create_app())
    yield server
    server.stop()


def received(server: Server) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = httpx.get(f"{server.url}/_sandbox/received").json()["events"]
    return events


def down(server: Server, is_down: bool) -> None:
    httpx.put(f"{server.url}/_sandbox/down", json={"down": is_down}).raise_for_status()


def sink(server: Server, fmt: str = "splunk_hec", **config: Any) -> AuditSink:
    url = server.url if fmt == "splunk_hec" else server.url + siem.JSON_PATH
    values: dict[str, Any] = {"url": url, "format": fmt, "timeout_seconds": 2}
    values["token" if fmt == "splunk_hec" else "secret"] = (
        siem.TOKEN if fmt == "splunk_hec" else siem.SECRET
    )
    values.update(config)
    return AuditSink(AuditSinkConfig(**values))


def lifecycle(redis: Redis[str], ticket: str = "42") -> list[str]:
    """Three events of one verification; returns their ids."""
    store = Store(redis, PREFIX, 3600, chain=TEST_CHAIN)
    v, _ = store.open(desk="acme", ticket_id=ticket, ticket_display=f"#{ticket}",
                      requester_id="u1", reason="mfa_reset", now=1000, resume_at=1060)  # fmt: skip
    sent = store.advance(v, State.SENT, 1001, interview_id=f"iv-{ticket}", channel="EMAIL",
                         destination="j***@acme.test", sent_at=1001)  # fmt: skip
    store.advance(sent, State.VERIFIED, 1002)
    return [f["id"] for _, f in redis.xrange(audit.stream_key(PREFIX))][-3:]


def test_events_reach_hec_and_are_acknowledged_only_then(redis: Redis[str], intake: Server) -> None:
    ids = lifecycle(redis)
    forwarder = Forwarder(redis, PREFIX, sink(intake).send, batch=10)
    assert forwarder.step(block_ms=None) == 3
    got = received(intake)
    assert [e["id"] for e in got] == ids
    assert got[0]["hec"]["sourcetype"] == "deskgate:audit" and got[0]["hec"]["time"] == 1000.0
    assert got[1]["destination"] == "j***@acme.test" and got[1]["session"] == "iv-42"
    status = audit_forwarder.status(redis, PREFIX, now=2000)
    assert status["unsent"] == 0 and status["lag_seconds"] == 0
    assert status["forwarded_total"] == 3 and status["failures_total"] == 0
    assert forwarder.step(block_ms=None) == 0  # nothing more


def test_while_the_sink_is_down_nothing_is_acknowledged_and_the_same_events_go_again(
    redis: Redis[str], intake: Server
) -> None:
    ids = lifecycle(redis)
    forwarder = Forwarder(redis, PREFIX, sink(intake).send, batch=2)
    down(intake, True)
    for _ in range(3):
        with pytest.raises(Retriable):
            forwarder.step(block_ms=None)
    lifecycle(redis, "43")  # newer events wait behind the failed batch
    status = audit_forwarder.status(redis, PREFIX)
    assert status["failures_total"] == 3 and status["unsent"] == 6 and status["lag_seconds"] > 0
    down(intake, False)
    while forwarder.step(block_ms=None):
        pass
    got = [e["id"] for e in received(intake)]
    assert got[:3] == ids and len(got) == 6 == len(set(got))  # in order, each once
    assert audit_forwarder.status(redis, PREFIX)["unsent"] == 0


def test_a_batch_a_dead_forwarder_held_is_claimed_by_another(
    redis: Redis[str], intake: Server
) -> None:
    ids = lifecycle(redis)

    def dies(events: Any) -> None:
        raise KeyboardInterrupt  # the process went away mid-send: no ack, no failure counted

    with pytest.raises(KeyboardInterrupt):
        Forwarder(redis, PREFIX, dies, consumer="dead").step(block_ms=None)
    survivor = Forwarder(redis, PREFIX, sink(intake).send, consumer="alive", claim_idle_ms=0)
    assert survivor.step(block_ms=None) == 3
    assert [e["id"] for e in received(intake)] == ids
    assert audit_forwarder.status(redis, PREFIX)["unsent"] == 0


def test_signed_json_is_verified_by_the_receiver_and_a_wrong_secret_is_refused(
    redis: Redis[str], intake: Server
) -> None:
    ids = lifecycle(redis)
    wrong = Forwarder(redis, PREFIX, sink(intake, "json_hmac", secret="not-the-secret-0000").send)
    with pytest.raises(AuthFailed):
        wrong.step(block_ms=None)
    assert received(intake) == []
    right = Forwarder(redis, PREFIX, sink(intake, "json_hmac").send, consumer=wrong.consumer)
    assert right.step(block_ms=None) == 3
    assert [(e["id"], e["via"]) for e in received(intake)] == [(i, "json") for i in ids]


def test_a_wrong_hec_token_is_refused_and_nothing_acknowledged(
    redis: Redis[str], intake: Server
) -> None:
    lifecycle(redis)
    forwarder = Forwarder(redis, PREFIX, sink(intake, token="wrong-token-0123456789").send)
    with pytest.raises(AuthFailed):
        forwarder.step(block_ms=None)
    assert audit_forwarder.status(redis, PREFIX)["unsent"] == 3


def test_events_trimmed_before_they_were_sent_are_counted_not_sent(
    redis: Redis[str], intake: Server
) -> None:
    lifecycle(redis)
    forwarder = Forwarder(redis, PREFIX, sink(intake).send, batch=10)
    down(intake, True)
    with pytest.raises(Retriable):
        forwarder.step(block_ms=None)
    redis.xtrim(audit.stream_key(PREFIX), maxlen=1, approximate=False)  # retention ran
    down(intake, False)
    assert forwarder.step(block_ms=None) == 1
    status = audit_forwarder.status(redis, PREFIX)
    assert status["trimmed_unsent"] == 2 and status["unsent"] == 0


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # The receiver's recipe in docs/audit.md, computed independently.
    import hashlib
    import hmac

    body = b'[{"id":"x"}]'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k" * 16, "1700000000", body) == f"sha256={expected}"


def test_the_sink_settings_name_what_is_missing() -> None:
    from connectors.registry import SETTINGS, load_settings

    data = settings_data(audit_sink={"url": "https://splunk.example:8088"})
    with pytest.raises(ConfigError, match=r"audit_sink: .*needs token"):
        load_settings(**data)
    short = {"url": "https://siem.example/in", "format": "json_hmac", "secret": "short"}
    with pytest.raises(ConfigError, match=r"audit_sink\.secret: .*at least 16"):
        load_settings(**settings_data(audit_sink=short))
    ok = SETTINGS(**settings_data(audit_sink={**short, "secret": "s" * 16}))
    assert ok.audit_sink is not None and isinstance(ok.audit_sink.secret, SecretStr)
    assert ok.audit_retention_days == 400
    for url, why in (
        ("http://siem.example/in", "must be https"),
        ("https://user:pw@siem.example/in", "must not carry a user"),
        ("https://siem.example/in?token=abc", "must not carry a user, password, query"),
    ):
        with pytest.raises(ConfigError, match=rf"audit_sink\.url: .*{why}"):
            load_settings(**settings_data(audit_sink={**short, "secret": "s" * 16, "url": url}))
    local = {**short, "secret": "s" * 16, "url": "http://127.0.0.1:9000/in"}
    assert SETTINGS(**settings_data(audit_sink=local)).audit_sink is not None


def test_check_config_says_where_the_audit_trail_goes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.test_settings import example_config
    from worker.commands import cli

    example_config(monkeypatch)
    assert cli.main(["check-config"]) == 0
    assert "audit trail: 400 days, at most 500000 events; not forwarded" in capsys.readouterr().out
    monkeypatch.setenv("DESKGATE_AUDIT_SINK__URL", "https://splunk.acme.test:8088")
    assert cli.main(["check-config"]) == 2  # a HEC without its token does not load
    assert "audit_sink" in capsys.readouterr().err
    monkeypatch.setenv("DESKGATE_AUDIT_SINK__TOKEN", "hec-token-0123456789")
    assert cli.main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "forwarded to https://splunk.acme.test:8088 (splunk_hec)" in out
    assert "hec-token" not in out


def test_a_redirect_is_not_a_delivery(redis: Redis[str]) -> None:
    """A SIEM behind an http -> https redirect (or a moved collector) answers 3xx and keeps
    nothing; httpx does not follow it, so the batch must stay unacknowledged."""
    app = flask.Flask("moved")
    app.add_url_rule(
        "/services/collector/event",
        view_func=lambda: flask.redirect("https://elsewhere.example/", 301),
        methods=["POST"],
    )
    moved = serve(app)
    try:
        lifecycle(redis)
        forwarder = Forwarder(redis, PREFIX, sink(moved).send, batch=10)
        with pytest.raises(Fatal, match="HTTP 301"):
            forwarder.step(block_ms=None)
        assert audit_forwarder.status(redis, PREFIX)["unsent"] == 3
    finally:
        moved.stop()


def refuse(server: Server, code: int | None) -> None:
    httpx.put(f"{server.url}/_sandbox/refuse", json={"code": code}).raise_for_status()


def poison(server: Server, *ids: str) -> None:
    httpx.put(f"{server.url}/_sandbox/poison", json={"ids": list(ids)}).raise_for_status()


def lifecycles(redis: Redis[str], count: int, first: int = 100) -> list[str]:
    """``count`` lifecycles' events (three each) on tickets from ``first`` on, oldest first. A
    ticket whose verification ended is not free until its outcome is written (``release``), so
    each call names new tickets."""
    return [entry_id for n in range(count) for entry_id in lifecycle(redis, str(first + n))]


def test_a_siem_refusing_everything_as_incorrect_index_sets_nothing_aside(
    redis: Redis[str], intake: Server
) -> None:
    """The third review's finding: HEC answers 400 "Incorrect index" (code 7) to every batch
    once the token may no longer write its index. That is the SIEM's configuration, not the
    events: nothing is set aside however often it is tried (it used to be after five tries),
    the figures say it refuses (the alert's gauge), and once fixed every event arrives."""
    ids = lifecycles(redis, 10)
    forwarder = Forwarder(redis, PREFIX, sink(intake).send, batch=10)
    refuse(intake, 7)
    for _ in range(8):
        with pytest.raises(Fatal, match="Incorrect index"):
            forwarder.step(block_ms=None)
    status = audit_forwarder.status(redis, PREFIX)
    assert status["set_aside_total"] == 0 and status["unsent"] == 30
    assert status["refusing"] == 1 and received(intake) == []
    refuse(intake, None)
    while forwarder.step(block_ms=None):
        pass
    assert [e["id"] for e in received(intake)] == ids
    status = audit_forwarder.status(redis, PREFIX)
    assert status["refusing"] == 0 and status["unsent"] == 0 and status["set_aside_total"] == 0


def test_a_siem_refusing_every_event_as_content_sets_nothing_aside(
    redis: Redis[str], intake: Server
) -> None:
    """Every event refused alike, even with a content code (HEC 6, "Invalid data format"), is
    the receiver, not the events: when every part of the split is refused, nothing is set
    aside. Once the SIEM has taken an event, that event is sent first (a duplicate), and its
    refusal says so in one request instead of a split."""
    forwarder = Forwarder(redis, PREFIX, sink(intake).send, batch=6)
    lifecycles(redis, 2)
    refuse(intake, 6)
    with pytest.raises(Fatal, match="every event"):
        forwarder.step(block_ms=None)
    status = audit_forwarder.status(redis, PREFIX)
    assert status["failures_total"] == 11  # the batch, then each half down to the six events
    assert status["set_aside_total"] == 0 and status["unsent"] == 6 and status["refusing"] == 1
    refuse(intake, None)
    assert forwarder.step(block_ms=None) == 6
    lifecycles(redis, 2, first=200)
    refuse(intake, 6)
    with pytest.raises(Fatal, match="last event it took"):
        forwarder.step(block_ms=None)
    status = audit_forwarder.status(redis, PREFIX)
    assert status["failures_total"] == 13 and status["set_aside_total"] == 0
    assert status["unsent"] == 6


def test_one_poison_event_among_fifty_is_the_only_one_set_aside(
    redis: Redis[str], intake: Server
) -> None:
    """One event HEC cannot take (400 code 6) in a batch of 51: the batch is split until it is
    alone; it alone is set aside, the 50 around it are delivered (some twice: HEC keeps what
    came before the invalid event, the same ids), and it stays in the trail."""
    ids = lifecycles(redis, 17)
    bad = ids[25]
    poison(intake, bad)
    forwarder = Forwarder(redis, PREFIX, sink(intake).send, batch=100)
    assert forwarder.step(block_ms=None) == 50
    assert {e["id"] for e in received(intake)} == set(ids) - {bad}
    status = audit_forwarder.status(redis, PREFIX)
    assert status["set_aside_total"] == 1 and status["set_aside_waiting"] == 1
    assert status["unsent"] == 0 and status["refusing"] == 0
    assert bad in [f["id"] for _, f in redis.xrange(audit.stream_key(PREFIX))]


def test_an_event_refused_alone_is_set_aside_only_if_the_last_one_taken_still_passes(
    redis: Redis[str], intake: Server
) -> None:
    """A batch of one has no neighbours: the last event the SIEM took is sent again to tell."""
    ids = lifecycle(redis)
    poison(intake, ids[2])
    fresh = Forwarder(redis, PREFIX, sink(intake).send, batch=1)
    assert fresh.step(block_ms=None) == 1
    assert fresh.step(block_ms=None) == 1
    assert fresh.step(block_ms=None) == 0  # refused, and the second event still passes
    status = audit_forwarder.status(redis, PREFIX)
    assert status["set_aside_total"] == 1 and status["unsent"] == 0
    assert [e["id"] for e in received(intake)] == [ids[0], ids[1], ids[1]]


def test_audit_resend_delivers_the_set_aside_events_once_the_siem_takes_them(
    redis: Redis[str],
    intake: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from connectors.registry import SETTINGS
    from worker.commands import cli

    ids = lifecycles(redis, 17)
    bad = [ids[3], ids[40]]
    poison(intake, *bad)
    forwarder = Forwarder(redis, PREFIX, sink(intake).send, batch=100)
    assert forwarder.step(block_ms=None) == 49
    assert audit_forwarder.status(redis, PREFIX)["set_aside_waiting"] == 2
    config = {"url": intake.url, "token": siem.TOKEN, "timeout_seconds": 2}
    loaded = SETTINGS(**settings_data(audit_sink=config))
    monkeypatch.setattr(cli, "load_settings", lambda: loaded)
    assert cli.main(["audit", "resend"]) == 1  # still refused: nothing lost, still set aside
    assert "SIEM took none" in capsys.readouterr().err
    assert audit_forwarder.status(redis, PREFIX)["set_aside_waiting"] == 2
    poison(intake)  # the SIEM is fixed
    assert cli.main(["audit", "resend"]) == 0
    out, err = capsys.readouterr()
    assert "resent 2; still refused 0" in out and "2 of 2 set-aside events tried" in err
    assert {e["id"] for e in received(intake)} == set(ids)
    status = audit_forwarder.status(redis, PREFIX)
    assert status["set_aside_waiting"] == 0 and status["resent_total"] == 2
    assert status["set_aside_total"] == 2 and status["refusing"] == 0
    assert cli.main(["audit", "resend"]) == 0  # again: nothing left, nothing sent
    assert "resent 0" in capsys.readouterr().out
    assert cli.main(["audit", "sink-status"]) == 0
    out = capsys.readouterr().out
    assert "set_aside_waiting 0" in out and "resent_total 2" in out and "refusing:" not in out


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (7, Misconfigured), (10, Misconfigured), (11, Misconfigured), (14, Misconfigured),
        (5, ContentRefused), (6, ContentRefused), (12, ContentRefused), (13, ContentRefused),
        (1, AuthFailed), (4, AuthFailed), (9, Retriable),
    ],
)  # fmt: skip
def test_hec_codes_tell_the_receivers_configuration_from_the_content(
    intake: Server, code: int, error: type[Exception]
) -> None:
    refuse(intake, code)
    event = {"id": "e1", "time": "2026-12-01T10:00:00.000Z"}
    with pytest.raises(error, match=siem.HEC_CODES[code][1]):
        sink(intake).send([event])


def test_a_generic_endpoints_code_means_nothing_its_400_is_content() -> None:
    """Only Splunk's table gives ``code`` a meaning: a signed-JSON receiver answering 400 with
    a "code" 7 of its own is refusing the content, which the forwarder then splits."""
    app = flask.Flask("generic")
    app.add_url_rule(
        "/in", view_func=lambda: (flask.jsonify({"code": 7, "text": "bad"}), 400), methods=["POST"]
    )
    server = serve(app)
    try:
        config: dict[str, Any] = {"url": f"{server.url}/in", "format": "json_hmac"}
        config["secret"] = siem.SECRET
        with pytest.raises(ContentRefused):
            AuditSink(AuditSinkConfig(**config)).send([{"id": "e1"}])
    finally:
        server.stop()


def test_a_batch_too_large_for_the_receiver_is_split_and_all_of_it_delivered(
    redis: Redis[str],
) -> None:
    """A receiver with a body limit answers 413 to a full batch: the halves fit, so every event
    arrives and none is set aside."""
    taken: list[str] = []
    app = flask.Flask("small")

    def intake() -> tuple[str, int]:
        body = flask.request.get_data()
        if len(body) > 4000:
            return "Content too large", 413
        taken.extend(e["id"] for e in json.loads(body))
        return "", 204

    app.add_url_rule("/in", view_func=intake, methods=["POST"])
    server = serve(app)
    try:
        ids = lifecycles(redis, 6)
        config: dict[str, Any] = {"url": f"{server.url}/in", "format": "json_hmac"}
        config["secret"] = siem.SECRET
        send = AuditSink(AuditSinkConfig(**config)).send
        assert Forwarder(redis, PREFIX, send, batch=18).step(block_ms=None) == 18
        assert sorted(taken) == sorted(ids)
        assert audit_forwarder.status(redis, PREFIX)["set_aside_total"] == 0
    finally:
        server.stop()


def test_an_outage_is_never_set_aside(redis: Redis[str], intake: Server) -> None:
    lifecycle(redis)
    forwarder = Forwarder(redis, PREFIX, sink(intake).send, batch=3)
    down(intake, True)
    for _ in range(7):
        with pytest.raises(Retriable):
            forwarder.step(block_ms=None)
    status = audit_forwarder.status(redis, PREFIX)
    assert status["set_aside_total"] == 0 and status["refusing"] == 0
    down(intake, False)
    assert forwarder.step(block_ms=None) == 3
