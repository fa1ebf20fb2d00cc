"""``deskgate report``: verifications, outcomes, pass rate and times, from the audit trail.

deskgate report --since 30d|2026-11-01|2026-11-01T08:00:00Z [--until ...] [--desk NAME]
                [--format table|json|csv] [--html FILE] [--events FILE]

The events come from an ``EventSource`` (the audit trail's reader) or, with ``--events``, from a
file of JSON lines (an export of the trail; ``-`` reads standard input).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from config import files
from worker.audit import parse_moment
from worker.commands.report.aggregate import build
from worker.commands.report.formats import stamp, to_csv, to_json, to_table
from worker.commands.report.page import to_html

# read_events(since, until, desk): the audit events recorded in [since, until), oldest first,
# on one desk or (None) all.
EventSource = Callable[[datetime, datetime, str | None], Iterator[Mapping[str, Any]]]
# After the events were read: did the trail they came from verify, and the verdict in words.
TrailCheck = Callable[[], tuple[bool, str]]

# Outcomes recorded up to this long after the period still count for the verifications opened in
# it: longer than a verification stays open (its link, then a manual review of 72 h by default).
FOLLOW = timedelta(days=30)
NO_TRAIL = "deskgate report: the audit trail is not available here (no event reader is wired)"


def events_file(stream: TextIO) -> EventSource:
    """An event source over JSON lines (an audit trail export). It yields every line's event:
    ``build`` keeps those of the period and the desk."""

    def read(since: datetime, until: datetime, desk: str | None) -> Iterator[Mapping[str, Any]]:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--events line {number}: not JSON ({exc.msg})") from None
            if not isinstance(event, dict):
                raise ValueError(f"--events line {number}: not a JSON object")
            yield event

    return read


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deskgate report",
        description="Verifications, outcomes, pass rate and time to verify, per desk and reason.",
    )
    parser.add_argument("--since", required=True, help="30d, 12h, 2w, 2026-11-01 or RFC 3339")
    parser.add_argument("--until", help="the period's end (default now; a date includes that day)")
    parser.add_argument("--desk", help="one desk only (its name in the configuration)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--html", metavar="FILE", type=Path, help="also write the HTML page here")
    parser.add_argument("--events", metavar="FILE", help="read a JSON-lines export (- = stdin)")
    return parser


def _moment(
    parser: argparse.ArgumentParser, option: str, text: str, now: datetime, end_of_day: bool
) -> datetime:
    try:
        return parse_moment(text, now, end_of_day=end_of_day)
    except ValueError as exc:
        parser.error(f"{option}: {exc}")  # exits 2, naming the option


def run(
    argv: list[str],
    read_events: EventSource | None = None,
    now: datetime | None = None,
    out: TextIO | None = None,
    check_trail: TrailCheck | None = None,
) -> int:
    """The command; ``read_events`` is the audit trail's reader (None: not wired here), and
    ``check_trail`` says whether what it read verified (None: it cannot tell)."""
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    now = now or datetime.now(UTC)
    since = _moment(parser, "--since", args.since, now, end_of_day=False)
    until = _moment(parser, "--until", args.until, now, end_of_day=True) if args.until else now
    if since >= until:
        parser.error(f"--since ({stamp(since)}) must be before --until ({stamp(until)})")
    with ExitStack() as opened:
        if args.events:
            try:
                handle = (
                    sys.stdin
                    if args.events == "-"
                    else opened.enter_context(open(args.events, encoding="utf-8"))
                )
            except OSError as exc:
                parser.error(f"--events: cannot read {args.events}: {exc.strerror}")
            read_events = events_file(handle)
            check_trail = None  # an export: its chain is not checked here
        if read_events is None:
            print(f"{NO_TRAIL}; export the trail and pass it with --events FILE", file=sys.stderr)
            return 2
        try:
            # The period's verifications, and their outcomes recorded up to FOLLOW after it.
            report = build(read_events(since, until + FOLLOW, args.desk), since, until, args.desk)
        except ValueError as exc:
            print(f"deskgate report: {exc}", file=sys.stderr)
            return 2
    if check_trail is not None:
        verified, verdict = check_trail()
        report = replace(report, trail_verified=verified, trail=verdict)
        if not verified:  # said on every format's way out, CSV's too (it has no place for it)
            print(f"deskgate report: WARNING: {verdict}", file=sys.stderr)
    if args.format == "json":
        out.write(to_json(report, now))
    elif args.format == "csv":
        out.write(to_csv(report))
    else:
        out.write(to_table(report, now))
    if args.html:
        try:
            files.write_output(args.html, to_html(report, now))
        except OSError as exc:
            why = f"--html: cannot write {args.html}: {exc.strerror}"
            print(f"deskgate report: {why}", file=sys.stderr)
            return 2
        print(f"deskgate report: HTML page written to {args.html}", file=sys.stderr)
    return 0
