"""The report's renderings: JSON and CSV carry the same numbers, the table fits 100 columns, and
nothing from data reaches the HTML page, a spreadsheet or a terminal as markup or control."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from tests.audit_events import SINCE, UNTIL, Lifecycle, at, bypass, bypasses, hand_checked, trail
from worker.commands.report import build
from worker.commands.report.aggregate import Report
from worker.commands.report.formats import (
    ALL,
    BYPASS_COLUMNS,
    CSV_COLUMNS,
    to_csv,
    to_dict,
    to_json,
    to_table,
)
from worker.commands.report.page import CSP, to_html

GENERATED = datetime(2026, 11, 28, 19, 3, 14, tzinfo=UTC)
HOSTILE_DESK = "<script>alert('desk')</script>"
HOSTILE_REASON = '"><img src=x onerror=alert(1)>'
HOSTILE_CODE = "</td><script>alert(2)</script>"


def report() -> Report:
    return build(trail(hand_checked()), SINCE, UNTIL)


def hostile_report() -> Report:
    lifecycles = [
        Lifecycle("verified", at(2), desk=HOSTILE_DESK, reason=HOSTILE_REASON),
        Lifecycle(f"error:{HOSTILE_CODE}", at(3), desk=HOSTILE_DESK, reason=HOSTILE_REASON),
        Lifecycle("failed", at(4), desk='=HYPERLINK("http://evil.test")', reason="@SUM(A1)"),
        Lifecycle("verified", at(4), desk="desk\x1b[2J\x1b]0;pwned\x07", reason="r"),
    ]
    return build(trail(lifecycles), SINCE, UNTIL)


def test_json_is_the_documented_shape() -> None:
    r = report()
    data = json.loads(to_json(r, GENERATED))
    assert data == to_dict(r, GENERATED)
    assert data["generated"] == "2026-11-28T19:03:14Z"
    assert (data["since"], data["until"], data["desk"]) == (
        "2026-11-01T00:00:00Z", "2026-11-08T00:00:00Z", None,
    )  # fmt: skip
    (zd,) = [g for g in data["groups"] if (g["desk"], g["reason"]) == ("acme_zendesk", "mfa_reset")]
    assert zd["verifications"] == 9 and zd["pass_rate"] == 0.8
    assert zd["time_to_verify"] == {"count": 4, "p50": 120, "p90": 3600}
    assert zd["errors"][0] == {
        "code": "link_cap",
        "label": "link cap hit: too many links for this requester or ticket within the window",
        "count": 1,
    }
    assert data["totals"]["verifications"] == 13
    assert len(data["days"]) == 7 and data["days"][0]["date"] == "2026-11-01"
    assert data["time_to_verify_histogram"][-1] == {"from": 86400, "to": None, "count": 0}
    assert data["skipped_events"] == 0


def test_csv_round_trips_to_the_json_numbers() -> None:
    r = report()
    rows = list(csv.DictReader(io.StringIO(to_csv(r))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(r.groups) + 1
    data = to_dict(r, GENERATED)
    expected = [*data["groups"], {"desk": ALL, "reason": ALL, **data["totals"]}]
    for row, want in zip(rows, expected, strict=True):
        assert (row["desk"], row["reason"]) == (want["desk"], want["reason"])
        for name in ("verifications", "verified", "failed", "expired", "error", "open"):
            assert int(row[name]) == want[name], name
        for name in ("pass_rate", "expired_rate", "error_rate"):
            assert (float(row[name]) if row[name] else None) == want[name], name
        p50 = row["time_to_verify_p50_seconds"]
        assert (float(p50) if p50 else None) == want["time_to_verify"]["p50"]
        codes = [e.split(":") for e in row["top_errors"].split(";") if e]
        assert [(c, int(n)) for c, n in codes] == [(e["code"], e["count"]) for e in want["errors"]]


def test_csv_cells_cannot_become_formulas() -> None:
    rows = list(csv.reader(io.StringIO(to_csv(hostile_report()))))
    cells = [cell for row in rows for cell in row]
    assert '\'=HYPERLINK("http://evil.test")' in cells and "'@SUM(A1)" in cells
    assert not any(cell[:1] in ("=", "+", "-", "@") for cell in cells)


def test_table_fits_a_100_column_terminal() -> None:
    long_names = [
        Lifecycle("verified", at(2), desk="d" * 40, reason="r" * 40, took=timedelta(days=3)),
        *hand_checked(),
    ]
    text = to_table(build(trail(long_names), SINCE, UNTIL), GENERATED)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "acme_zendesk / mfa_reset" in text
    totals = next(line for line in text.splitlines() if line.startswith(ALL))
    assert totals.split()[1:4] == ["14", "8", "1"]  # verifications, verified, failed


def test_table_prints_no_terminal_control_from_data() -> None:
    text = to_table(hostile_report(), GENERATED)
    assert "\x1b" not in text and "\x07" not in text
    assert "desk?[2J?]0;pwned?" in text


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action", "xlink:href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(page: str) -> _Tags:
    tags = _Tags()
    tags.feed(page)
    return tags


def test_html_escapes_every_string_from_data() -> None:
    page = to_html(hostile_report(), GENERATED)
    found = parsed(page)
    # No markup from data: no script, no image, no handler, only the page's own elements.
    assert "script" not in found.tags and "img" not in found.tags
    assert found.tags <= {
        "html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "p",
        "div", "section", "svg", "desc", "line", "text", "rect", "ul", "li", "span", "strong",
        "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td", "code", "dl", "dt", "dd",
    }  # fmt: skip
    assert "onerror" not in page.replace("onerror=alert(1)&gt;", "")
    text = "".join(found.text)
    # ...and the hostile names are shown to the reader as the text they are.
    assert HOSTILE_DESK in text and HOSTILE_REASON in text and HOSTILE_CODE in text


def test_html_is_self_contained() -> None:
    page = to_html(report(), GENERATED)
    found = parsed(page)
    assert found.urls == []
    # The only URL is the SVG namespace, which is a name, not a fetch.
    assert page.count("://") == page.count('xmlns="http://www.w3.org/2000/svg"')
    assert f'content="{CSP}"' in page and "default-src 'none'" in CSP
    assert "@import" not in page and "url(" not in page


def test_html_says_what_it_covers() -> None:
    page = to_html(report(), GENERATED)
    text = " ".join("".join(parsed(page).text).split())
    assert "2026-11-01T00:00:00Z to 2026-11-08T00:00:00Z" in text
    assert "Generated 2026-11-28T19:03:14Z" in text
    assert "verified: the employee passed Incode's identity check" in text
    # The charts are described for screen readers, with their numbers.
    assert 'role="img"' in page and "2026-11-01: 2" in page


def test_empty_report_renders() -> None:
    empty = build([], SINCE, UNTIL, desk="acme_zendesk")
    page = to_html(empty, GENERATED)
    assert "No verifications in this period." in page
    assert "(all)" in to_table(empty, GENERATED)
    data: dict[str, Any] = json.loads(to_json(empty, GENERATED))
    assert data["desk"] == "acme_zendesk" and data["totals"]["pass_rate"] is None


def test_lifted_gates_and_overturned_markers_reach_every_format() -> None:
    """Who lifted gates (most often first) and the markers overturned, per desk and code, in
    JSON, CSV (the totals row), the table and the HTML page; an agent's name from the desk is
    data, never markup."""
    lifecycles = [
        Lifecycle("lifted+verified", at(2), actor="agent-7"),
        Lifecycle("lifted+failed", at(3), actor="agent-7"),
        Lifecycle("lifted+verified", at(3, 11), actor="<b>mallory</b>"),
        Lifecycle("forged", at(4)),
        Lifecycle("forged", at(4, 12), desk="acme_servicenow"),
        Lifecycle("forged", UNTIL),  # after the period: not counted
    ]
    r = build(trail(lifecycles), SINCE, UNTIL)
    data = to_dict(r, GENERATED)
    assert data["totals"]["gates_lifted"] == 3
    assert data["totals"]["lifted_by"] == [
        {"actor": "agent-7", "count": 2}, {"actor": "<b>mallory</b>", "count": 1},
    ]  # fmt: skip
    assert [(o["desk"], o["code"], o["count"]) for o in data["markers_overturned"]] == [
        ("acme_servicenow", "marker_forged", 1), ("acme_zendesk", "marker_forged", 1),
    ]  # fmt: skip
    rows = list(csv.reader(io.StringIO(to_csv(r))))
    total = dict(zip(CSV_COLUMNS, rows[-1], strict=True))
    assert (total["gates_lifted"], total["markers_overturned"]) == ("3", "2")
    assert total["lifted_by"] == "agent-7:2;<b>mallory</b>:1"
    table = to_table(r, GENERATED)
    assert "gates lifted before the result: 3, by agent-7 (2)" in table
    assert "verified markers overturned" in table
    page = to_html(r, GENERATED)
    assert "<b>mallory</b>" not in page and "&lt;b&gt;mallory&lt;/b&gt;" in page
    assert "Gates lifted and markers overturned" in page


def with_bypasses(desk: str | None = None) -> Report:
    events = sorted(trail(hand_checked()) + bypasses(), key=lambda e: str(e["time"]))
    return build(events, SINCE, UNTIL, desk)


def test_bypasses_are_counted_once_each_by_actor_action_and_severity() -> None:
    b = with_bypasses().bypasses
    assert b.total == 3 and b.break_glass == 1  # the redelivery and the later one left out
    assert b.by_actor == (("00uhelpdesk", 2), ("00uother", 1))
    assert b.by_action == (("reset_mfa", 2), ("unlock", 1))
    assert b.by_severity == (("medium", 2), ("high", 1))  # most frequent first
    assert with_bypasses("acme_zendesk").bypasses == b  # an IdP's, whatever the desk filter
    assert with_bypasses().skipped == 0  # IdP events are not malformed verification events
    assert with_bypasses().totals == report().totals  # and they are not verifications


def test_bypasses_in_json_csv_and_the_table() -> None:
    r = with_bypasses()
    data = to_dict(r, GENERATED)["bypasses"]
    assert data["total"] == 3 and data["break_glass"] == 1
    assert data["by_severity"] == [
        {"severity": "medium", "count": 2},
        {"severity": "high", "count": 1},
    ]
    first, second = to_csv(r).split("\n\n")
    assert first == to_csv(report()).rstrip("\n")  # the verifications' table is unchanged
    rows = list(csv.reader(io.StringIO(second)))
    assert tuple(rows[0]) == BYPASS_COLUMNS
    assert ["actor", "00uhelpdesk", "2"] in rows and ["break_glass", "", "1"] in rows
    text = to_table(r, GENERATED)
    assert "(bypasses): 3" in text and "by actor: 00uhelpdesk 2, 00uother 1" in text
    assert "no verified ticket explains" in to_html(r, GENERATED)
    assert "\n\n" not in to_csv(report())  # none in the period: one table, as before


def test_a_hostile_actor_name_stays_text_in_every_format() -> None:
    evil = bypass(at(2), '=cmd|"/c calc"!A1<script>x</script>\x1b[2J', "unlock", "high", "e9")
    r = build([evil], SINCE, UNTIL)
    assert "<script>x" not in to_html(r, GENERATED)
    assert "\x1b" not in to_table(r, GENERATED)
    assert not any(c[:1] == "=" for row in csv.reader(io.StringIO(to_csv(r))) for c in row)
