"""What one simulator brings to the sandbox: everything ``Stack``, ``deskgate demo``/``dev``, the
benchmarks and the end-to-end fixtures need to run it, so none of them names a vendor.

Each simulator module exports one ``Simulator`` (``SIMULATOR``); ``sandbox.registry`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from sandbox.driver import DeskDriver
from sandbox.options import Wiring

C = TypeVar("C")  # the simulator's app config


@dataclass(frozen=True)
class Simulator(Generic[C]):
    name: str  # the registry key, the webhook path (``/webhooks/<name>``) and the desk kind
    create_app: Callable[[C], Any]  # the simulator's WSGI app (Flask) for a config
    app_config: Callable[[Wiring], C]  # that config, for the stack it runs in
    config_text: Callable[[Wiring], str]  # its block of Deskgate's TOML config (no secrets)
    secrets: Mapping[str, str]  # the environment variables Deskgate reads its secrets from
    dev_port: int  # where ``deskgate dev`` serves it
    # What ``deskgate dev`` prints about it (its URL and credentials), from its URL and config.
    banner: Callable[[str, C], str]
    # People acting on a desk simulator, given a client of the simulator and its config; None
    # for a simulator that is not a desk (Incode).
    driver: Callable[[httpx.Client, C], DeskDriver] | None = None
    client_timeout: float = 10.0  # the stack's control client's timeout for this simulator
    # The admin account (user, secret) `deskgate setup` provisions a desk simulator with; None:
    # nothing to provision (Incode has no API for its settings).
    admin: tuple[str, str] | None = None
    # How an admin imports the update set ``deskgate setup <desk> --update-set`` wrote, and takes
    # the manual steps setup prints after it, given the simulator's URL, the file and the desk's
    # block of Deskgate's config; None: the desk takes no update sets (setup --apply only).
    import_update_set: Callable[[str, bytes, Mapping[str, Any]], None] | None = None
