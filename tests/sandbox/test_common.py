"""The controls every simulator shares: stalls before and after a request takes effect."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask, Response, jsonify, request

from sandbox.common import Controls, Server, on_stop, serve


@pytest.fixture
def server() -> Iterator[tuple[Server, list[int]]]:
    hits: list[int] = []
    app = Flask("t")

    @app.post("/thing")
    def thing() -> Response:
        hits.append(1)
        return jsonify({"n": len(hits)})

    Controls("t", lambda status, msg: Response(msg, status=status)).install(app)
    running = serve(app)
    yield running, hits
    running.stop()


def test_a_stall_before_serves_late_and_takes_effect_late(server: tuple[Server, list[int]]) -> None:
    running, hits = server
    httpx.post(f"{running.url}/_sandbox/faults", json={"path_prefix": "/thing", "status": 0,
                                                        "delay": 0.3})  # fmt: skip
    start = time.monotonic()
    resp = httpx.post(f"{running.url}/thing")
    assert resp.status_code == 200 and time.monotonic() - start >= 0.3
    assert hits == [1]


def test_a_stall_after_takes_effect_although_the_client_gives_up(
    server: tuple[Server, list[int]],
) -> None:
    running, hits = server
    stall = {"path_prefix": "/thing", "status": 0, "delay": 0.5, "stage": "after"}
    httpx.post(f"{running.url}/_sandbox/faults", json=stall)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{running.url}/thing", timeout=0.2)
    assert hits == [1]  # it happened; the client never heard


def test_an_error_fault_never_reaches_the_handler(server: tuple[Server, list[int]]) -> None:
    running, hits = server
    httpx.post(f"{running.url}/_sandbox/faults", json={"path_prefix": "/thing", "status": 503,
                                                        "retry_after": 2})  # fmt: skip
    resp = httpx.post(f"{running.url}/thing")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
    assert hits == []
    assert httpx.post(f"{running.url}/thing").status_code == 200  # one-shot


def test_a_skewed_clock_shows_in_every_answers_one_date_header(
    server: tuple[Server, list[int]],
) -> None:
    running, _ = server

    def dates() -> list[float]:
        raw = httpx.post(f"{running.url}/thing").headers.get_list("Date")
        return [email.utils.parsedate_to_datetime(d).timestamp() for d in raw]

    [right] = dates()
    assert abs(right - time.time()) < 2
    httpx.put(f"{running.url}/_sandbox/date_skew", json={"seconds": -600})
    [wrong] = dates()  # one Date, the skewed one: not the server's beside the app's
    assert abs(wrong - (time.time() - 600)) < 2
    httpx.put(f"{running.url}/_sandbox/date_skew", json={"seconds": 0})
    [again] = dates()
    assert abs(again - time.time()) < 2


def test_given_a_fault_then_it_is_listed_until_requests_have_taken_it(
    server: tuple[Server, list[int]],
) -> None:
    running, _ = server
    fault = {"path_prefix": "/thing", "status": 500, "count": 2, "method": "POST"}
    httpx.post(f"{running.url}/_sandbox/faults", json=fault)
    [pending] = httpx.get(f"{running.url}/_sandbox/faults").json()["faults"]
    assert (pending["path_prefix"], pending["count"]) == ("/thing", 2)

    assert httpx.post(f"{running.url}/thing").status_code == 500
    assert httpx.get(f"{running.url}/_sandbox/faults").json()["faults"][0]["count"] == 1
    assert httpx.post(f"{running.url}/thing").status_code == 500
    assert httpx.get(f"{running.url}/_sandbox/faults").json()["faults"] == []


def test_given_a_stalled_call_then_the_log_says_when_it_arrived_and_was_answered(
    server: tuple[Server, list[int]],
) -> None:
    running, _ = server
    httpx.post(f"{running.url}/_sandbox/faults", json={"path_prefix": "/thing", "status": 0,
                                                        "delay": 0.3})  # fmt: skip
    before = time.time()
    httpx.post(f"{running.url}/thing")
    [call] = httpx.get(f"{running.url}/_sandbox/calls").json()["calls"]
    assert before <= call["started"] <= before + 0.1
    assert call["at"] - call["started"] >= 0.3  # the stall sits between the two


# -- the server: keep-alive, as vendors' servers do ---------------------------------------------


@pytest.fixture
def echo() -> Iterator[Server]:
    app = Flask("echo")

    @app.route("/echo", methods=["GET", "POST"])
    def echo_route() -> Response:
        return jsonify({"body": len(request.get_data()), "port": request.environ["REMOTE_PORT"]})

    @app.post("/ignore")
    def ignore() -> Response:  # never reads the body it was sent
        return jsonify({})

    @app.delete("/gone")
    def gone() -> Response:
        return Response(status=204)

    @app.get("/stream")
    def stream() -> Response:  # no Content-Length from the app
        return Response((b"ab" for _ in range(3)), mimetype="text/plain")

    running = serve(app)
    yield running
    running.stop()


def test_a_pooled_client_reuses_one_connection(echo: Server) -> None:
    with httpx.Client(base_url=echo.url) as client:
        ports = {client.get("/echo").json()["port"] for _ in range(20)}
        assert client.post("/ignore", content=b"x" * 100_000).status_code == 200
        assert client.post("/echo", content=b"abc").json()["body"] == 3  # the rest was skipped
        gone = client.delete("/gone")
        assert (gone.status_code, gone.content) == (204, b"")
        streamed = client.get("/stream")
        assert (streamed.text, streamed.headers["Content-Length"]) == ("ababab", "6")
        ports.add(client.get("/echo").json()["port"])
    assert len(ports) == 1


def test_a_client_that_closes_and_reconnects_is_served(echo: Server) -> None:
    with httpx.Client(base_url=echo.url) as client:
        closing = client.get("/echo", headers={"Connection": "close"})
        assert closing.headers["Connection"] == "close"
        assert client.get("/echo").status_code == 200
    assert httpx.get(f"{echo.url}/echo").status_code == 200


def test_stopping_ends_open_connections_and_runs_stop_hooks() -> None:
    app = Flask("hooked")
    app.add_url_rule("/ok", "ok", lambda: "ok")
    closed: list[bool] = []
    on_stop(app, lambda: closed.append(True))
    running = serve(app)
    with httpx.Client(base_url=running.url) as client:
        assert client.get("/ok").status_code == 200
        running.stop()
        with pytest.raises(httpx.TransportError):  # the pooled connection is gone with the server
            client.get("/ok", timeout=2)
    assert closed == [True]
