"""The ``deskgate`` command.

deskgate check-config        validate the configuration and print what it sets up
deskgate web                 the webhook app under gunicorn
deskgate worker              a Celery worker (thread pool)
deskgate beat                the scheduler: desk polls and the sweep (run exactly one)
deskgate audit export        the audit trail as JSON lines or CSV (docs/audit.md)
deskgate audit sink-status   how far forwarding to the SIEM lags, and its failures
deskgate audit resend        send the events the SIEM refused (set aside) again
deskgate audit verify        check the audit trail's hash chain; names its first broken link
deskgate privacy export      what Deskgate holds about one person, as JSON (docs/privacy.md)
deskgate privacy erase       erase it (--dry-run: say what would go)
deskgate report              verifications, outcomes and times over a period (docs/report.md)
deskgate doctor              check every configured system and the deployment (exit 1 on a ✗)
deskgate explain <desk> <t>  why a ticket did or did not get a link (desk, store, audit trail)
deskgate setup <desk|incode> provision a desk through its API (or print Incode's steps)
deskgate demo                the whole flow on the sandbox, then a timeline of each ticket
deskgate dev                 the same pieces, kept running for trying things by hand

``demo`` and ``dev`` are plug-ins: commands in the ``deskgate.commands`` entry point group, which
the sandbox provides in a source checkout (``pip install -e '.[dev]'``). Deskgate never imports
the sandbox, and the wheel and the production image do not contain it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from config import files
from config.privacy import display_url
from config.settings import ConfigError, Settings
from connectors.registry import load_settings
from worker.commands import setup_cli
from worker.commands.report import command as report

if TYPE_CHECKING:
    from redis import Redis


def _check_config() -> int:
    settings = load_settings()
    print("configuration ok")
    # Every URL rebuilt from its parts: no user-info, no query (``?password=``), no fragment.
    print(f"  redis: {display_url(settings.redis_url)}")
    print(f"  incode: {display_url(settings.incode.api_base)}")
    for name, desk in settings.desks.items():
        # "Set" is what turns push on (an empty secret no longer loads): not the value's truth.
        push = "push+poll" if desk.webhook_secret is not None else "poll only"
        triggers = ", ".join(desk.triggers)
        where = display_url(desk.base)
        print(f"  desk {name}: {desk.kind} {where} ({push}; triggers: {triggers})")
    sink = settings.audit_sink
    forward = f"forwarded to {display_url(sink.base)} ({sink.format})" if sink else "not forwarded"
    chain = "audit_secret" if settings.audit_secret else "a key derived from note_secret"
    print(
        f"  audit trail: {settings.audit_retention_days} days, at most "
        f"{settings.audit_max_events} events; {forward}; chained with {chain}"
    )
    return 0


def _audit(args: argparse.Namespace) -> int:

    from worker import audit
    from worker.audit import forwarder as audit_forwarder
    from worker.redis_client import connect

    settings = load_settings()
    redis: Redis[str] = connect(settings.redis_url)
    if args.audit_command == "sink-status":
        if settings.audit_sink is None:  # every event would look "unsent": say what is so
            held = redis.xlen(audit.stream_key(settings.key_prefix))
            print(f"no audit_sink configured: the audit trail ({held} events) is not forwarded")
            return 0
        for name, value in audit_forwarder.status(redis, settings.key_prefix).items():
            print(f"{name} {value:g}")
        stats = redis.hgetall(audit_forwarder.stats_key(settings.key_prefix))
        for name in ("refusing", "last_error", "last_set_aside"):
            if stats.get(name):
                print(f"{name}: {stats[name]}")
        return 0
    if args.audit_command == "resend":
        return _resend(redis, settings)
    if args.audit_command == "verify":
        from worker.audit import verify as audit_verify

        return audit_verify.run(redis, settings, args.since)
    try:
        now = datetime.now(UTC)
        since = audit.parse_moment(args.since, now)
        until = audit.parse_moment(args.until, now, end_of_day=True) if args.until else now
    except ValueError as exc:
        print(f"deskgate audit export: {exc}", file=sys.stderr)
        return 2
    if args.desk is not None and args.desk not in settings.desks:
        known = ", ".join(settings.desks)
        print(
            f"deskgate audit export: no desk {args.desk!r} (configured: {known})", file=sys.stderr
        )
        return 2
    events = audit.read(redis, settings.key_prefix, since, until, args.desk)
    if args.output:
        # Who was verified, when, for what: readable by its owner only, like the secrets; never
        # through a link someone planted where the file goes (config/files.py).
        try:
            handle = files.open_output(args.output, files.PRIVATE)
        except OSError as exc:
            why = f"--output: cannot write {args.output}: {exc.strerror}"
            print(f"deskgate audit export: {why}", file=sys.stderr)
            return 2
        with io.TextIOWrapper(handle, encoding="utf-8", newline="") as out:
            count = audit.write(events, out, args.format)
    else:
        count = audit.write(events, sys.stdout, args.format)
    print(f"exported {count} audit events", file=sys.stderr)
    return 0


def _resend(redis: Redis[str], settings: Settings) -> int:
    """``deskgate audit resend``: the events set aside, to the SIEM again (docs/audit.md)."""
    from connectors.audit_sink import AuditSink
    from connectors.http import ApiError
    from worker.audit import forwarder as audit_forwarder

    if settings.audit_sink is None:
        print("deskgate audit resend: no audit_sink configured", file=sys.stderr)
        return 2
    sink = AuditSink(settings.audit_sink)
    forwarder = audit_forwarder.Forwarder(
        redis, settings.key_prefix, sink.send, batch=settings.audit_sink.batch_size
    )

    def progress(done: int, total: int) -> None:
        print(f"{done} of {total} set-aside events tried", file=sys.stderr)

    try:
        counts = forwarder.resend(progress)
    except ApiError as exc:
        print(f"deskgate audit resend: stopped, the SIEM took none of a batch: {exc}; what "
              "was sent is done, run it again once the SIEM is fixed", file=sys.stderr)  # fmt: skip
        return 1
    finally:
        sink.close()
    print(
        f"resent {counts['resent']}; still refused {counts['refused']} (set aside); "
        f"no longer in the trail {counts['gone']}"
    )
    return 1 if counts["refused"] else 0


def _doctor(as_json: bool, desk: str | None) -> int:
    from worker.commands import doctor  # its checks import Celery and every kind: only when it runs

    settings = load_settings()
    if desk is not None and desk not in settings.desks:
        known = ", ".join(settings.desks)
        print(f"no desk {desk!r} in the configuration (desks: {known})", file=sys.stderr)
        return 2
    checks = doctor.run(settings, desk)
    print(doctor.as_json(checks) if as_json else doctor.as_text(checks))
    return doctor.exit_status(checks)


def _explain(desk_name: str, quoted: str, as_json: bool) -> int:
    import time

    from connectors.registry import build_desk
    from worker.audit.chain import Chain
    from worker.commands import explain
    from worker.lifecycle.caps import LinkCap
    from worker.lifecycle.pseudonym import Pseudonyms
    from worker.lifecycle.store import Store
    from worker.redis_client import connect

    settings = load_settings()
    config = settings.desks.get(desk_name)
    if config is None:
        known = ", ".join(settings.desks)
        print(f"no desk {desk_name!r} in the configuration (desks: {known})", file=sys.stderr)
        return 2
    redis: Redis[str] = connect(settings.redis_url)
    store = Store(
        redis, settings.key_prefix, settings.retention_days * 86400, chain=Chain.of(settings)
    )
    caps = LinkCap(redis, settings.key_prefix, Pseudonyms(settings.note_secrets, "requester"))
    desk = build_desk(
        desk_name, config, settings.http_timeout_seconds, settings.http_deadline_seconds
    )
    try:
        found = explain.explain(
            desk_name=desk_name, config=config, desk=desk, store=store, caps=caps,
            quoted=quoted, now=time.time(), poll_interval=config.poll_interval_seconds,
        )  # fmt: skip
    finally:
        desk.close()
    print(found.as_json() if as_json else found.as_text())
    return 0 if found.found else 1


WEB_APP = "webhooks.app:create_app()"
# Sets up Prometheus's multiprocess directory in gunicorn's master, before workers fork.
WEB_CONFIG = "python:webhooks.gunicorn_conf"


def gunicorn_args(bind: str, workers: int = 2, connections: int = 1000) -> list[str]:
    """``python -m gunicorn ...`` for the webhook app: the one set of server settings, used by
    ``deskgate web``, the test stack and the benchmarks.

    gevent workers, so a slow or idle connection costs a greenlet, not one of a few threads
    (sixteen trickling bodies stopped the gthread set-up). Each worker serves ``connections`` at
    once; headers must arrive within the keep-alive window (5 s) and a body within
    ``webhook_body_timeout_seconds`` (webhooks/deadline.py, 408); request lines and headers are
    kept small, as webhooks need no more. docs/decisions.md, "Serving".
    """
    return [
        "-m", "gunicorn", "--bind", bind, "--workers", str(workers),
        "--worker-class", "gevent", "--worker-connections", str(connections),
        "--keep-alive", "5", "--limit-request-line", "2048", "--limit-request-fields", "64",
        "--limit-request-field_size", "8190", "--config", WEB_CONFIG, WEB_APP,
    ]  # fmt: skip


def _exec(args: list[str]) -> int:
    load_settings()  # fail here, naming the field, rather than deep inside a child process
    os.execv(sys.executable, [sys.executable, *args])  # noqa: S606 - our own interpreter
    return 0  # not reached


def _privacy(args: argparse.Namespace) -> int:
    import json

    from worker.commands.privacy import BadPerson, Privacy
    from worker.redis_client import connect

    settings = load_settings()
    redis: Redis[str] = connect(settings.redis_url)
    privacy = Privacy(redis, settings)
    try:
        person = privacy.person(args.person)
    except BadPerson as exc:
        print(f"--person: {exc}", file=sys.stderr)
        return 2
    if args.privacy_command == "export":
        result = privacy.export(person)
    else:
        result = privacy.erase(person, dry_run=args.dry_run)
    print(json.dumps(result, indent=2))
    return 0


def _audit_trail() -> tuple[report.EventSource, report.TrailCheck]:
    """The audit trail's reader for ``deskgate report`` (the configured Redis's stream), and
    whether the chain of what it read verified."""
    from worker import audit
    from worker.audit import verify as audit_verify
    from worker.audit.chain import Chain, Verifier
    from worker.redis_client import connect

    checked: list[Verifier] = []

    def read(since: datetime, until: datetime, desk: str | None) -> Iterator[Mapping[str, Any]]:
        # Loaded here, not before: ``--events FILE`` reports on an export with no config at all.
        settings = load_settings()
        redis: Redis[str] = connect(settings.redis_url)
        checked.append(Verifier(Chain.of(settings), from_start=False))
        return audit.read(redis, settings.key_prefix, since, until, desk, verifier=checked[0])

    def check() -> tuple[bool, str]:
        verifier = checked[0]
        verifier.finish(verifier.at_head)  # the tail is ``deskgate audit verify``'s to check
        return verifier.broken is None, audit_verify.describe(verifier)

    return read, check


PLUGINS = "deskgate.commands"  # entry point group: name -> callable(argv) -> exit status
SANDBOX_COMMANDS = ("demo", "dev")  # README's commands, which the sandbox plug-in provides
NO_SANDBOX = (
    "deskgate {command} runs on the sandbox (simulated desks and Incode), which ships with the "
    "source, not with the package or the image: clone the repository and run "
    "`pip install -e '.[dev]'` (or `make {command}`) there."
)


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=PLUGINS)}


def _run_plugin(command: str, plugin: EntryPoint | None, argv: list[str]) -> int:
    """Load a plug-in command only when it runs, so no other command imports it."""
    if plugin is None:
        print(NO_SANDBOX.format(command=command), file=sys.stderr)
        return 2
    try:
        run: Callable[[list[str]], int] = plugin.load()
    except ModuleNotFoundError as exc:
        # Declared by the package's metadata, but its module is not installed (a wheel).
        if exc.name is None or plugin.module.split(".")[0] != exc.name.split(".")[0]:
            raise
        print(NO_SANDBOX.format(command=command), file=sys.stderr)
        return 2
    return run(argv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`deskgate audit export | head`): what it wanted, it has. Point
        # stdout at nothing so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="deskgate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check-config", help="validate the configuration")
    web = sub.add_parser("web", help="serve the webhook app with gunicorn")
    web.add_argument("--bind", default="127.0.0.1:8000")
    web.add_argument("--workers", type=int, default=2)
    web.add_argument(
        "--connections", type=int, default=1000, help="connections per worker (default 1000)"
    )
    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=128, help="threads (default 128)")
    beat = sub.add_parser("beat", help="run the scheduler (exactly one per deployment)")
    beat.add_argument("--schedule", default="celerybeat-schedule", help="beat's state file")
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_command", required=True
    )
    export = audit.add_parser("export", help="write the audit events of a period")
    export.add_argument("--since", required=True, help="2026-01-01, 2026-01-01T12:00:00Z or 30d")
    export.add_argument("--until", help="as --since (default: now)")
    export.add_argument("--desk", help="only this desk's events")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--output", help="write to this file (default: standard output)")
    audit.add_parser("sink-status", help="the SIEM forwarding's lag and failures")
    audit.add_parser("resend", help="send the events the SIEM refused (set aside) again")
    verify = audit.add_parser("verify", help="check the trail's hash chain (docs/audit.md)")
    verify.add_argument("--since", help="only from this time on (default: the trail's start)")
    privacy = sub.add_parser("privacy", help="data-subject requests").add_subparsers(
        dest="privacy_command", required=True
    )
    for name, help_text in (("export", "print what Deskgate holds about a person, as JSON"),
                            ("erase", "erase what Deskgate holds about a person")):  # fmt: skip
        request = privacy.add_parser(name, help=help_text)
        request.add_argument(
            "--person", required=True, help="<desk>:<requester id>, or an e-mail address or phone"
        )
        if name == "erase":
            request.add_argument("--dry-run", action="store_true", help="change nothing")
    # It parses its own arguments (``deskgate report --help``).
    sub.add_parser("report", help="verifications and outcomes over a period", add_help=False)
    doctor = sub.add_parser("doctor", help="check the configured systems and the deployment")
    doctor.add_argument("--json", action="store_true", help="machine-readable (docs/setup.md)")
    doctor.add_argument("--desk", metavar="NAME", help="look at this desk only")
    explain = sub.add_parser("explain", help="why a ticket did or did not get a link")
    explain.add_argument("desk", help="the desk's name in the configuration")
    explain.add_argument("ticket", help="as agents quote it: #42 or 42, INC0010001 or a sys_id")
    explain.add_argument("--json", action="store_true", help="machine-readable")
    setup_cli.add_arguments(sub.add_parser("setup", help="provision a desk (idempotent)"))
    plugins = _plugins()
    plugin_commands = sorted({*SANDBOX_COMMANDS, *plugins})
    for name in plugin_commands:
        plugin = plugins.get(name)
        where = f"plug-in {plugin.value}" if plugin else "needs the sandbox: not installed"
        # The plug-in parses its own arguments (``deskgate demo --help`` is its help).
        sub.add_parser(name, help=f"({where})", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command in plugin_commands:
        return _run_plugin(args.command, plugins.get(args.command), rest)
    try:
        if args.command == "report":
            read_events, check_trail = _audit_trail()
            return report.run(rest, read_events, check_trail=check_trail)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if args.command == "check-config":
            return _check_config()
        if args.command == "audit":
            return _audit(args)
        if args.command == "privacy":
            return _privacy(args)
        if args.command == "doctor":
            return _doctor(args.json, args.desk)
        if args.command == "explain":
            return _explain(args.desk, args.ticket, args.json)
        if args.command == "setup":
            return setup_cli.run(args)
        if args.command == "web":
            web_args = gunicorn_args(args.bind, args.workers, args.connections)
            return _exec([*web_args[:-1], "--access-logfile", "-", web_args[-1]])
        if args.command == "worker":
            return _exec(
                [
                    # --quiet: no plain-text banner among the JSON lines (config/logging.py)
                    "-m", "celery", "-A", "worker.main", "--quiet", "worker", "--pool", "threads",
                    "--concurrency", str(args.concurrency), "--loglevel", "INFO",
                ]
            )  # fmt: skip
        if args.command == "beat":
            return _exec(
                ["-m", "celery", "-A", "worker.main", "--quiet", "beat", "--loglevel", "INFO",
                 "--schedule", args.schedule]
            )  # fmt: skip
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2

    return 0  # not reached: every command above returns


if __name__ == "__main__":
    raise SystemExit(main())
