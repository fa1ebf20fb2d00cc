"""``deskgate report``: periods, the event source, the formats and the answers to bad input."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.audit_events import hand_checked, trail
from worker.audit import parse_moment
from worker.commands import cli
from worker.commands.report.command import FOLLOW, run

NOW = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)


def test_periods() -> None:
    assert parse_moment("30d", NOW) == NOW - timedelta(days=30)
    assert parse_moment("12h", NOW) == NOW - timedelta(hours=12)
    assert parse_moment("2w", NOW) == NOW - timedelta(weeks=2)
    assert parse_moment("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    # A date as the end includes that day.
    assert parse_moment("2026-11-30", NOW, end_of_day=True) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_moment("2026-11-01T08:30:00+01:00", NOW) == datetime(
        2026, 11, 1, 7, 30, tzinfo=UTC
    )
    for bad, why in (("30", "not a period"), ("tomorrow", "not a period"), ("-5d", "not a period")):
        with pytest.raises(ValueError, match=why):
            parse_moment(bad, NOW)
    with pytest.raises(ValueError, match="no time zone"):
        parse_moment("2026-11-01T08:00:00", NOW)


def export(tmp_path: Path) -> Path:
    path = tmp_path / "trail.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in trail(hand_checked())))
    return path


def test_report_from_an_export_in_each_format(tmp_path: Path) -> None:
    path, html = export(tmp_path), tmp_path / "report.html"
    period = ["--since", "2026-11-01", "--until", "2026-11-07", "--events", str(path)]
    out = io.StringIO()
    assert run([*period, "--format", "json", "--html", str(html)], now=NOW, out=out) == 0
    data = json.loads(out.getvalue())
    assert data["totals"]["verifications"] == 13 and data["totals"]["verified"] == 7
    assert data["until"] == "2026-11-08T00:00:00Z"
    assert html.read_text().startswith("<!DOCTYPE html>")

    out = io.StringIO()
    assert run([*period, "--format", "csv", "--desk", "acme_servicenow"], now=NOW, out=out) == 0
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["desk"], r["verifications"]) for r in rows] == [
        ("acme_servicenow", "3"),
        ("(all)", "3"),
    ]

    out = io.StringIO()
    assert run(period, now=NOW, out=out) == 0
    assert out.getvalue().startswith("Deskgate report, all desks: verifications opened")


def test_the_source_is_asked_for_the_period_and_what_followed() -> None:
    asked: list[tuple[datetime, datetime, str | None]] = []

    def source(since: datetime, until: datetime, desk: str | None) -> Iterator[Mapping[str, Any]]:
        asked.append((since, until, desk))
        yield from trail(hand_checked())

    out = io.StringIO()
    assert run(["--since", "7d", "--desk", "acme_zendesk"], source, now=NOW, out=out) == 0
    assert asked == [(NOW - timedelta(days=7), NOW + FOLLOW, "acme_zendesk")]


def test_without_a_reader_it_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--since", "30d"], None, now=NOW) == 2
    assert "audit trail is not available" in capsys.readouterr().err


def test_deskgate_report_is_this_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--help"])
    assert exit_.value.code == 0
    assert "usage: deskgate report [-h] --since SINCE" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--since", "yesterday"], "--since: 'yesterday' is not a period"),
        (["--since", "1d", "--until", "2026-13-01"], "--until: '2026-13-01' is not a period"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "must be before --until"),
        (["--since", "1d", "--format", "xml"], "invalid choice: 'xml'"),
        (["--since", "1d", "--events", "/nonexistent/trail"], "--events: cannot read"),
    ],
)
def test_bad_arguments_are_named(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(argv, now=NOW)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_an_unwritable_page_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--since", "2026-11-01", "--events", str(export(tmp_path))]
    assert run([*argv, "--html", str(tmp_path / "no" / "such" / "dir.html")], now=NOW) == 2
    assert "--html: cannot write" in capsys.readouterr().err


def test_a_bad_export_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = export(tmp_path)
    path.write_text(path.read_text() + "{not json\n")
    assert run(["--since", "2026-11-01", "--events", str(path)], now=NOW) == 2
    last = len(path.read_text().splitlines())
    assert f"--events line {last}: not JSON" in capsys.readouterr().err
