"""The simulator registry and what ``Stack`` builds from it, without starting the whole system:
the generated config and secrets load as Deskgate's settings, each desk kind gets its own
driver, the dev banner names every part, and the benchmarks can serve any simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.harness import serve_in_process
from connectors.registry import load_settings
from sandbox.demo import DEV_PORTS, dev_banner
from sandbox.registry import DESKS, SIMULATORS
from sandbox.stack import SECRETS, Stack, StackOptions, free_port
from tests.conftest import TEST_REDIS_URL


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack wired but not started: nothing listens, and only ``deskgate setup`` connects to
    Redis (the tests' database), to record its audit event."""
    built = Stack(StackOptions(redis_url=TEST_REDIS_URL), workdir=tmp_path)
    yield built
    built.stop()


def test_every_desk_simulator_has_a_driver_of_its_own(stack: Stack) -> None:
    assert DESKS, "the sandbox drives at least one desk"
    drivers = {kind: stack.driver(kind) for kind in DESKS}
    assert {kind: d.system for kind, d in drivers.items()} == {kind: kind for kind in DESKS}
    assert len({d.desk for d in drivers.values()}) == len(DESKS)  # a config name each
    assert stack.driver(DESKS[0]) is drivers[DESKS[0]]  # kept, not rebuilt per call


@pytest.mark.parametrize("kind", ["jira", "incode"])
def test_a_kind_without_a_desk_simulator_gets_no_driver(stack: Stack, kind: str) -> None:
    """A test for a desk kind the sandbox cannot simulate fails loudly, never on another desk."""
    with pytest.raises(ValueError, match=f"no desk simulator '{kind}'"):
        stack.driver(kind)


def test_generated_config_and_secrets_load_as_deskgate_settings(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As ``start`` does before Deskgate's processes: the desks `deskgate setup` provisions get
    # their push secret from it.
    stack.serve_simulators()
    stack.provision()
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    kinds = {desk.kind: desk for desk in settings.desks.values()}
    assert set(kinds) == set(DESKS)
    for kind, desk in kinds.items():
        assert desk.base.startswith(stack.urls[kind])
        assert desk.webhook_secret is not None  # push is on: the simulator signs its webhooks
    assert settings.incode.api_base.startswith(stack.urls["incode"])
    assert set(SECRETS) <= set(stack.env)


def test_ports_asked_for_are_kept_and_the_rest_are_free_ones(tmp_path: Path) -> None:
    web = free_port()
    stack = Stack(StackOptions(redis_url="redis://127.0.0.1:1/0", ports={"web": web}), tmp_path)
    try:
        assert stack.ports["web"] == web
        assert set(stack.ports) == {"web", "metrics", *SIMULATORS}
        assert len(set(stack.ports.values())) == len(stack.ports)
    finally:
        stack.stop()
    assert len(set(DEV_PORTS.values())) == len(DEV_PORTS) == len(SIMULATORS) + 2


def test_dev_banner_names_every_webhook_path_and_simulator(stack: Stack) -> None:
    banner = dev_banner(stack)
    for name in SIMULATORS:
        assert stack.urls[name] in banner
    for name in (*DESKS, "incode"):
        assert f"/webhooks/{name}" in banner
    assert "/webhooks/entra" not in banner  # an IdP pushes nothing
    assert stack.web_url in banner


def test_bench_serves_a_registered_simulator_in_a_process_of_its_own(stack: Stack) -> None:
    port = free_port()
    served = serve_in_process("incode", stack.app_configs["incode"], "127.0.0.1", port)
    try:
        assert served.process.poll() is None
        resp = httpx.get(f"http://127.0.0.1:{port}/_sandbox/calls", timeout=5)
        assert resp.status_code == 200
        assert "calls" in resp.json()
    finally:
        served.stop()
    assert served.process.returncode is not None
