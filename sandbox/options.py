"""How a ``Stack`` is set up: what its callers (the demo, the tests, the benchmarks) choose."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class Running(Protocol):
    """A served simulator: ``sandbox.common.Server``, or whatever ``StackOptions.serve`` returns."""

    def stop(self) -> None: ...


# (simulator name in the registry, its app config, host, port) -> the running simulator.
ServeSimulator = Callable[[str, Any, str, int], Running]


@dataclass
class StackOptions:
    redis_url: str
    # Ports by part: "web" for the webhook app, a simulator's registry name for it; a part not
    # named (or 0) gets a free port.
    ports: Mapping[str, int] = field(default_factory=dict)
    host: str = "127.0.0.1"
    key_prefix: str = "dg"
    queue: str = "deskgate"
    employees: frozenset[str] = frozenset()
    link_validity_minutes: int = 30
    poll_interval_seconds: int = 60
    idp_poll_interval_seconds: int = 60  # each IdP's audit log (bypass detection)
    sweep_interval_seconds: int = 30
    reconcile_after_seconds: int = 300
    worker_concurrency: int = 16
    task_time_limit_seconds: int = 120
    http_deadline_seconds: float = 30.0
    # How old the employees' profiles look (users the drivers create): an employee's e-mail and
    # phone are old, so only a change a test makes is new to Deskgate's destination-age check.
    user_age_days: float = 30.0
    beat: bool = False
    log_format: str = "json"
    # Appended to Deskgate's generated config, and added to its environment (an audit sink).
    extra_config: str = ""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    metrics: bool = True  # metrics_enabled: off only to measure what they cost (bench.throughput)
    # How each simulator is served; None: a thread of the calling process
    # (``sandbox.common.serve``). The benchmarks serve each from a process of its own.
    serve: ServeSimulator | None = None
    # How the desks are provisioned: "apply", `deskgate setup --apply` through the vendor's API;
    # "update_set", a desk that takes update sets (ServiceNow) only by importing the file
    # `deskgate setup --update-set` writes and the manual steps it prints (the others: apply).
    provision: Literal["apply", "update_set"] = "apply"


@dataclass(frozen=True)
class Wiring:
    """What a simulator is told about the stack it runs in."""

    url: str  # where the simulator answers
    webhooks: str  # Deskgate's webhook endpoints' base: ``{webhooks}/{simulator name}``
    options: StackOptions
