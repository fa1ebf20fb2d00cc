"""Running ``deskgate doctor`` against a running stack, and the table of misconfigurations.

A row (``Misconfig``) names what to break (environment values for doctor's own configuration,
and/or ``inject``: a context manager that breaks something in the stack and restores it), and the
check doctor must name, with its status and a phrase its fix must contain. A desk's rows go in
its own test file, one line each, and run on the ``doctor_stack`` fixture (tests/e2e/conftest.py)
through ``assert_names``:

    ROWS = [
        Misconfig("wrong api token", "zendesk:acme_zendesk", "credentials", "API_TOKEN",
                  env={"DESKGATE_DESKS__ACME_ZENDESK__API_TOKEN": "wrong-token-0123456789"}),
    ]

    @pytest.mark.parametrize("case", ROWS, ids=[row.id for row in ROWS])
    def test_doctor_names_it(doctor_stack: Stack, case: Misconfig) -> None:
        assert_names(doctor_stack, case)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from config.privacy import scrub
from connectors.provisioning import Status
from connectors.registry import load_settings
from sandbox.stack import SECRETS, Stack
from worker.commands import doctor

Inject = Callable[[Stack], contextlib.AbstractContextManager[None]]


@dataclass(frozen=True)
class Report:
    """What ``deskgate doctor --json`` printed, parsed; ``text`` is the raw output."""

    checks: list[dict[str, str]]
    summary: dict[str, int]
    exit_status: int
    text: str

    @classmethod
    def parse(cls, text: str) -> Report:
        data: dict[str, Any] = json.loads(text)
        assert set(data) == {"checks", "summary", "exit_status"}, data
        for check in data["checks"]:
            assert set(check) == {"system", "name", "status", "detail", "fix"}, check
            assert check["status"] in {s.value for s in Status}, check
        return cls(data["checks"], data["summary"], data["exit_status"], text)

    def find(self, system: str, name: str) -> dict[str, str]:
        found = [c for c in self.checks if c["system"] == system and c["name"] == name]
        assert len(found) == 1, f"no single check {system}/{name} in:\n{self.text}"
        return found[0]

    def with_status(self, status: Status) -> list[dict[str, str]]:
        return [c for c in self.checks if c["status"] == status.value]


def doctor_env(stack: Stack) -> dict[str, str]:
    """The stack's own configuration, with ``public_url`` at its web app."""
    return {**stack.env, "DESKGATE_PUBLIC_URL": stack.web_url}


def run_doctor(
    stack: Stack,
    env: Mapping[str, str | None] | None = None,
    desk: str | None = None,
    ping_timeout: float = 2.0,
) -> Report:
    """Doctor in this process (Celery's ping waits all of it, for every worker's answer: 2 s
    leaves a loaded CI machine room without adding much to each row), with the
    stack's configuration changed by ``env`` (None removes a variable), its output taken
    through the same JSON the command prints."""
    values = {**doctor_env(stack), **(env or {})}
    with mock.patch.dict(os.environ):
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        settings = load_settings()
    return Report.parse(doctor.as_json(doctor.run(settings, desk, ping_timeout=ping_timeout)))


def _nothing(stack: Stack) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Misconfig:
    id: str
    system: str
    name: str
    fix: str  # a phrase the check's fix must contain
    status: Status = Status.FAIL
    env: Mapping[str, str | None] = field(default_factory=dict)
    inject: Inject = _nothing
    secrets: tuple[str, ...] = ()  # injected secrets not in ``env`` under a secret's name
    detail: str = ""  # a phrase the check's detail must contain


SECRET_NAMES = ("SECRET", "PASSWORD", "TOKEN", "KEY")


def assert_names(stack: Stack, case: Misconfig) -> Report:
    """Inject ``case``, run doctor, and check it names the check with its status and fix; and
    that no secret (the stack's, or one the row injected) and no e-mail address or phone number
    (unmasked) is in the output."""
    with case.inject(stack):
        report = run_doctor(stack, case.env)
    check = report.find(case.system, case.name)
    assert check["status"] == case.status.value, f"{case.id}:\n{report.text}"
    assert check["detail"], check
    assert case.detail in check["detail"], f"{case.id}: detail {check['detail']!r}"
    assert case.fix in check["fix"], f"{case.id}: fix {check['fix']!r} lacks {case.fix!r}"
    if case.status == Status.FAIL:
        assert report.exit_status == 1
    injected = [v for k, v in case.env.items() if v and any(s in k for s in SECRET_NAMES)]
    secrets = [*SECRETS.values(), *injected, *case.secrets]
    for secret in secrets:
        assert secret not in report.text, f"{case.id}: a secret is in doctor's output"
    unmasked = [line for line in report.text.splitlines() if scrub(line) != line]
    assert not unmasked, f"{case.id}: an e-mail or phone in doctor's output: {unmasked}"
    return report


@contextlib.contextmanager
def redis_config(stack: Stack, **values: str) -> Iterator[None]:
    """CONFIG SET on the stack's (the tests' own) Redis, restored afterwards."""
    names = [name.replace("_", "-") for name in values]
    saved = {name: stack.redis.config_get(name)[name] for name in names}
    try:
        for name, value in zip(names, values.values(), strict=True):
            stack.redis.config_set(name, value)
        yield
    finally:
        for name, value in saved.items():
            stack.redis.config_set(name, value)
