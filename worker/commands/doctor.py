"""``deskgate doctor``: every configured system and the deployment, as one checklist.

The groups (Redis, a worker, beat, the web app, the clocks, Incode, each desk, each IdP) run at
once, each in a thread: they only wait on the network, and the slowest (a worker's answer) then
sets the time doctor takes. A desk's checks come from its kind (``DeskKind.doctor``); a kind without
them gets a warning, so a new kind is never silently "fine".

The JSON shape (``--json``, documented in docs/setup.md) is stable:
``{"checks": [{"system", "name", "status", "detail", "fix"}], "summary": {"ok", "warn", "fail"},
"exit_status"}``.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from redis import Redis

from config.privacy import scrub
from config.settings import DeskConfig, Settings
from connectors.incode.doctor import check_incode
from connectors.provisioning import AdminCredential, Check, DoctorRequest, Status
from connectors.registry import IDP_KINDS, KINDS
from worker.audit.chain import Chain
from worker.commands import deployment_checks as deploy
from worker.commands import push_check
from worker.lifecycle.store import Store

MARKS = {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗"}
NO_DESK_CHECKS = "no checks for this desk kind yet"

Group = Callable[[], list[Check]]


def desk_checks(
    name: str, config: DeskConfig, url: str | None, timeout: float, admin: AdminCredential | None
) -> list[Check]:
    system = f"{config.kind}:{name}"
    doctor = KINDS[config.kind].doctor
    if doctor is None:
        return [Check(system, "desk checks", Status.WARN, NO_DESK_CHECKS)]
    return doctor(
        DoctorRequest(desk=name, config=config, public_url=url, timeout=timeout, admin=admin)
    )


def groups(
    settings: Settings,
    redis: Redis[str],
    desks: list[str],
    timeout: float,
    ping_timeout: float,
    admin: AdminCredential | None = None,
    idps: bool = True,
) -> list[tuple[str, Group]]:
    """(system, its checks) in the order they are printed; ``idps``: each IdP's too."""
    url = settings.public_base
    store = Store(
        redis, settings.key_prefix, settings.retention_days * 86400, chain=Chain.of(settings)
    )
    tolerance = settings.webhook_tolerance_seconds

    def clocks() -> list[Check]:
        others: list[tuple[str, Callable[[], float]]] = [
            ("redis", lambda: deploy.redis_offset(redis)),
            ("incode", lambda: deploy.http_date_offset(settings.incode.api_base, timeout)),
        ]
        for name in desks:
            desk = settings.desks[name]
            read = functools.partial(deploy.http_date_offset, desk.base, timeout)
            others.append((f"{desk.kind}:{name}", read))
        return [deploy.clock_check(name, read, tolerance) for name, read in others]

    found: list[tuple[str, Group]] = [
        ("redis", lambda: deploy.redis_checks(redis, settings.redis_url)),
        ("worker", lambda: [deploy.worker_check(settings, ping_timeout)]),
        ("beat", lambda: [deploy.beat_check(store, settings.sweep_interval_seconds, time.time())]),
        ("web", lambda: [deploy.web_check(url, timeout)]),
        ("audit", lambda: [deploy.audit_sink_check(settings)]),
        ("clock", clocks),
        ("incode", lambda: check_incode(settings.incode, timeout)),
    ]

    def pushes(name: str) -> list[Check]:
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        refused = push_check.refused_pushes(url, token, "servicenow", timeout)
        return [push_check.push_check(redis, settings.key_prefix, name, push_check.now(), refused)]

    for name in desks:
        config = settings.desks[name]
        found.append(
            (
                f"{config.kind}:{name}",
                functools.partial(desk_checks, name, config, url, timeout, admin),
            )
        )
        if config.kind == "servicenow" and config.webhook_secret is not None:
            found.append((f"{config.kind}:{name}", functools.partial(pushes, name)))
    # Each IdP's permissions, its audit log's included (bypass detection reads it every minute).
    for name, idp in settings.idps.items() if idps else ():
        check = IDP_KINDS[idp.kind].doctor
        if check is not None:
            found.append((f"{idp.kind}:{name}", functools.partial(check, name, idp)))
    return found


def run(
    settings: Settings,
    desk: str | None = None,
    timeout: float | None = None,
    ping_timeout: float = deploy.PING_TIMEOUT,
) -> list[Check]:
    """Every check, in a stable order. ``desk`` limits the desks looked at to that one."""
    desks = [desk] if desk is not None else list(settings.desks)
    timeout = timeout if timeout is not None else settings.http_timeout_seconds
    redis = deploy.redis_client(settings, timeout)
    # A desk's admin (from the environment, as for ``deskgate setup``) lets its kind check what
    # only an admin may read, such as Zendesk's webhook and signing secret. Only with ``--desk``:
    # one desk's admin credential is never sent to another desk's host.
    admin = AdminCredential.given() if desk is not None else None
    # With one desk named, its checks alone: an IdP is no desk's.
    todo = groups(settings, redis, desks, timeout, ping_timeout, admin, idps=desk is None)
    with redis, ThreadPoolExecutor(max_workers=len(todo)) as pool:
        futures = [(system, pool.submit(group)) for system, group in todo]
        checks: list[Check] = []
        for system, future in futures:
            try:
                checks.extend(future.result())
            except Exception as exc:  # a check that crashed is a finding, not doctor's end
                checks.append(
                    Check(
                        system,
                        "checks",
                        Status.FAIL,
                        f"the checks stopped: {type(exc).__name__}: {scrub(str(exc))}",
                        "fix what the error names, then run doctor again",
                    )
                )
    return checks


def exit_status(checks: list[Check]) -> int:
    return 1 if any(c.status == Status.FAIL for c in checks) else 0


def summary(checks: list[Check]) -> dict[str, int]:
    counts = Counter(c.status for c in checks)
    return {status.value: counts.get(status, 0) for status in Status}


def as_json(checks: list[Check]) -> str:
    return json.dumps(
        {
            "checks": [{**asdict(c), "status": c.status.value} for c in checks],
            "summary": summary(checks),
            "exit_status": exit_status(checks),
        },
        indent=2,
    )


def as_text(checks: list[Check]) -> str:
    lines: list[str] = []
    system = None
    for check in checks:
        if check.system != system:
            system = check.system
            lines.append(system)
        detail = f": {check.detail}" if check.detail else ""
        lines.append(f"  {MARKS[check.status]} {check.name}{detail}")
        if check.status == Status.FAIL and check.fix:
            lines.append(f"      fix: {check.fix}")
        elif check.status == Status.WARN and check.fix:
            lines.append(f"      check: {check.fix}")
    counts = summary(checks)
    verdict = "problems found" if exit_status(checks) else "no problems found"
    lines.append(
        f"{verdict}: {counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failed"
    )
    return "\n".join(lines)
