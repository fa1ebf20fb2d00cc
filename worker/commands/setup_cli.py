"""``deskgate setup <desk|incode>``: provision one configured desk through its API (or print
Incode's dashboard steps), one line per object.

The admin credential is never Deskgate's everyday API user and never needs to be on the command
line: ``--admin-user`` (or ``DESKGATE_ADMIN_USER``) names the admin, ``DESKGATE_ADMIN_SECRET``
(or the file ``--admin-secret-file``) holds its password or API token. A secret setup obtains (a
webhook's signing secret) is written only where the operator says: ``--secret-file`` (the value
alone) or ``--env-file`` (the one ``NAME=value`` line, updated in place). Through a symbolic link,
the file it points to is replaced (the service reads that one), keeping its group and its owner
and group permissions; a new file is mode 0600 (``config/files.py``). ``--update-set`` is an
output: a symbolic link there is refused.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from config import files
from config.settings import ConfigError, Settings
from connectors.http import ApiError
from connectors.incode import setup as incode_setup
from connectors.provisioning import (
    ADMIN_SECRET_ENV,
    ADMIN_USER_ENV,
    ROTATE_SECRET,
    Action,
    AdminCredential,
    Change,
    ProvisioningError,
    SetupRequest,
)
from connectors.registry import KINDS, load_settings
from worker.audit.chain import Chain
from worker.lifecycle.store import Store
from worker.redis_client import connect

ROTATION = (
    "To rotate the signing secret: `deskgate setup {desk} --rotate-secret --env-file F` (or "
    "--secret-file), then restart `deskgate web`. Pushes signed between the two are refused "
    "(401); the poller finds their tickets."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a desk's name in the config, or 'incode'")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    parser.add_argument("--admin-user", help=f"the admin's user or e-mail (or {ADMIN_USER_ENV})")
    parser.add_argument(
        "--admin-secret-file", type=Path, help=f"the admin's secret in a file ({ADMIN_SECRET_ENV})"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--secret-file", type=Path, help="write an obtained secret here, alone")
    where.add_argument("--env-file", type=Path, help="update the secret's NAME=value line here")
    parser.add_argument("--rotate-secret", action="store_true", help="reset the signing secret")
    parser.add_argument("--update-set", type=Path, help="ServiceNow: write the update set here")
    parser.add_argument("--apply", action="store_true", help="with --update-set: also apply it")


def _admin(args: argparse.Namespace) -> AdminCredential | None:
    return AdminCredential.given(args.admin_user, args.admin_secret_file)


def _written(path: Path, target: Path) -> str:
    return str(path) if target == path.absolute() else f"{path} -> {target}"


def secret_file_writer(path: Path) -> Any:
    def store(name: str, value: str) -> str:
        target = files.replace_target(path, value + "\n")
        return f"{_written(path, target)} (the value of {name})"

    return store


def env_file_writer(path: Path) -> Any:
    def store(name: str, value: str) -> str:
        lines = path.read_text().splitlines() if path.exists() else []
        line = f"{name}={value}"
        found = [i for i, text in enumerate(lines) if text.split("=", 1)[0].strip() == name]
        if found:
            lines[found[0]] = line
            lines = [text for i, text in enumerate(lines) if i not in found[1:]]
        else:
            lines.append(line)
        return _written(path, files.replace_target(path, "\n".join(lines) + "\n"))

    return store


def _print(changes: list[Change], dry_run: bool) -> None:
    for change in changes:
        action = str(change.action)
        if dry_run and change.action != Action.UNCHANGED:
            action = f"would {action}"
        detail = f"  ({change.detail})" if change.detail else ""
        print(f"{action:<16} {change.kind:<17} {change.name}{detail}")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    public_url = settings.public_base
    if public_url is None:
        print(
            "setup needs public_url (DESKGATE_PUBLIC_URL): where desks and Incode reach "
            "Deskgate's web app",
            file=sys.stderr,
        )
        return 2
    if args.target == "incode":
        _print(incode_setup.setup(settings.incode, public_url), dry_run=False)
        return 0
    config = settings.desks.get(args.target)
    if config is None:
        known = ", ".join([*settings.desks, "incode"])
        print(f"no desk {args.target!r} in the config (known: {known})", file=sys.stderr)
        return 2
    kind = KINDS[config.kind]
    if kind.setup is None:
        print(f"desk kind {config.kind} has no `deskgate setup`: see README", file=sys.stderr)
        return 2
    apply = args.update_set is None or args.apply
    admin = _admin(args)
    if admin is None and apply:  # writing the update set file alone contacts nothing
        print(
            f"setup needs the desk's admin: --admin-user (or {ADMIN_USER_ENV}) and "
            f"{ADMIN_SECRET_ENV} (or --admin-secret-file); not Deskgate's API user",
            file=sys.stderr,
        )
        return 2
    if args.rotate_secret and not args.dry_run and args.secret_file is args.env_file is None:
        # The old secret stops working at once: the new one must land where Deskgate reads it.
        print(
            "--rotate-secret needs --env-file or --secret-file: the new secret is shown only "
            "masked, and pushes are refused until Deskgate has it",
            file=sys.stderr,
        )
        return 2
    store = None
    if args.secret_file is not None:
        store = secret_file_writer(args.secret_file)
    elif args.env_file is not None:
        store = env_file_writer(args.env_file)
    request = SetupRequest(
        desk=args.target,
        config=config,
        public_url=public_url,
        admin=admin,
        dry_run=args.dry_run,
        apply=apply,
        update_set=args.update_set,
        store_secret=store,
        timeout=settings.http_timeout_seconds,
        options={ROTATE_SECRET: "1"} if args.rotate_secret else {},
    )
    try:
        changes = kind.setup(request)
    except (ProvisioningError, ApiError) as exc:
        print(f"setup {args.target}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file it was told to write (config/files.py says why)
        print(f"setup {args.target}: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    _print(changes, args.dry_run)
    if any(c.kind == "signing secret" for c in changes):
        print(ROTATION.format(desk=args.target))
    if args.dry_run:
        return 0
    try:
        rotated = args.rotate_secret and any(
            c.kind == "signing secret" and c.action != Action.UNCHANGED for c in changes
        )
        record(settings, args.target, changes, rotated=rotated)
    except RedisError as exc:
        print(
            f"setup {args.target}: applied, but its audit event could not be recorded in Redis "
            f"({type(exc).__name__}): run it again once Redis answers",
            file=sys.stderr,
        )
        return 1
    return 0


def operator() -> str:
    """Who ran the command: the operating-system user (a container may have no name for it)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def record(settings: Settings, desk: str, changes: list[Change], *, rotated: bool) -> None:
    """The audit events of a setup run that was not a dry run: ``setup.applied`` naming the
    objects it created, updated or wrote (or none), and ``secret.rotated`` for a rotation."""
    redis: Redis[str] = connect(settings.redis_url, socket_timeout=settings.http_timeout_seconds)
    store = Store(redis, settings.key_prefix, settings.retention_days * 86400,
                  chain=Chain.of(settings), audit_max_events=settings.audit_max_events)  # fmt: skip
    done = [f"{c.action} {c.kind} {c.name!r}" for c in changes if c.action != Action.UNCHANGED]
    actor, now = operator(), time.time()
    detail = "; ".join(done) if done else "nothing to change"
    store.record_admin("setup.applied", now, desk=desk, actor=actor, detail=detail)
    if rotated:
        what = "the desk's push signing secret was reset (the new one is not recorded here)"
        store.record_admin("secret.rotated", now, desk=desk, actor=actor, detail=what)
