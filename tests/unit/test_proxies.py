"""Outbound calls honour the proxy variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, either case),
proven through a real forwarding proxy on loopback: plain HTTP is forwarded, HTTPS is tunnelled
with CONNECT and still verified against the custom CA bundle (SSL_CERT_FILE), and a NO_PROXY host
is reached direct. httpx ignores these variables for a client with its own transport, which every
Deskgate client has (connectors/http.py)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from config.settings import IncodeConfig
from connectors.http import Retriable, json_body, new_client, request
from connectors.incode import IncodeClient
from sandbox import incode as sim
from sandbox.common import Server, serve
from tests.forward_proxy import ForwardProxy

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def describe(_: object) -> str:
    return ""


def ping_app() -> Flask:
    app = Flask(__name__)

    @app.post("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


@pytest.fixture(autouse=True)
def _no_proxy_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    running = ForwardProxy()
    yield running
    running.stop()


@pytest.fixture
def origin() -> Iterator[Server]:
    running = serve(ping_app())
    yield running
    running.stop()


@pytest.fixture
def tls_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on loopback with a certificate no public CA signed: (its URL, the CA
    bundle that trusts it)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = (str(cert), str(key))
    server = make_server("127.0.0.1", 0, ping_app(), threaded=True, ssl_context=tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.port}", cert
    server.shutdown()
    thread.join(timeout=5)


def ping(base_url: str) -> dict[str, object]:
    with new_client(base_url, timeout=5.0) as client:
        return json_body("sim", request(client, "sim", "POST", "/ping", describe, json={}))


def test_plain_http_goes_through_http_proxy(
    proxy: ForwardProxy, origin: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert ping(origin.url) == {"pong": "yes"}
    assert proxy.seen == [("POST", f"{origin.url}/ping")]


def test_https_is_tunnelled_through_https_proxy_and_verified_with_the_custom_ca(
    proxy: ForwardProxy, tls_origin: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca_bundle = tls_origin
    monkeypatch.setenv("https_proxy", proxy.url)  # curl's lower case works alike
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_bundle))
    assert ping(url) == {"pong": "yes"}
    assert proxy.seen == [("CONNECT", url.removeprefix("https://"))]


def test_through_the_proxy_an_unknown_certificate_is_still_refused(
    proxy: ForwardProxy, tls_origin: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tunnel changes nothing of TLS: without the CA bundle, the origin is not trusted."""
    url, _ = tls_origin
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(Retriable):
        ping(url)
    assert [method for method, _ in proxy.seen] == ["CONNECT"]


def test_a_no_proxy_host_is_reached_direct(
    proxy: ForwardProxy, origin: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.test, 127.0.0.1")
    assert ping(origin.url) == {"pong": "yes"}
    assert proxy.seen == []


def test_incode_calls_go_through_the_proxy(
    proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connector's clients are built when it is: both of Incode's (the token and the API)."""
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    config = sim.IncodeSimConfig(employees=frozenset({"jane@acme.test"}))
    server = serve(sim.create_app(config))
    incode = IncodeClient(
        IncodeConfig.model_validate(
            {
                "api_url": server.url, "auth_url": server.url,
                "integration_reference": config.integration_reference,
                "client_id": config.client_id, "client_secret": config.client_secret,
                "api_key": config.api_key, "executive_email": config.executive_email,
                "executive_password": config.executive_password,
                "webhook_secret": config.webhook_secret,
            }
        ),
        5.0,
    )  # fmt: skip
    try:
        incode.request_new(
            login_hint="jane@acme.test", channel="EMAIL", destination=None, validity_minutes=30
        )
    finally:
        incode.close()
        server.stop()
    assert len(proxy.seen) >= 2
    assert {target.split("/")[2] for _, target in proxy.seen} == {server.url.split("/")[2]}


def test_every_outside_client_is_built_by_new_client() -> None:
    """One place builds Deskgate's HTTP clients, so each honours the proxies: none other in the
    product's packages builds its own."""
    root = Path(__file__).resolve().parents[2]
    builders = [
        str(path.relative_to(root))
        for package in ("config", "connectors", "worker", "webhooks")
        for path in (root / package).rglob("*.py")
        if "httpx.Client(" in path.read_text()
    ]
    assert builders == ["connectors/http.py"]
