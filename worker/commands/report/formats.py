"""The report as JSON, CSV and a terminal table (the HTML page: ``worker.commands.report.page``).

The JSON shape is documented in docs/report.md; ``to_json`` and ``to_csv`` carry the same numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime
from typing import Any

from worker.audit import csv_cell
from worker.commands.report.aggregate import Bypasses, Report, Stats
from worker.commands.report.labels import error_label

ALL = "(all)"  # the desk and reason of the totals row in CSV and in the table
CSV_COLUMNS = (
    "desk", "reason", "verifications", "verified", "failed", "expired", "error", "abandoned",
    "open", "review", "pass_rate", "expired_rate", "error_rate", "time_to_verify_p50_seconds",
    "time_to_verify_p90_seconds", "timed", "link_caps", "recoveries", "top_errors",
    "gates_lifted", "lifted_by", "markers_overturned",
    "grants_opened", "grants_used", "grants_refused", "grants_expired", "actions_done",
    "actions_failed",
)  # fmt: skip


# What a trail that does not verify means for the figures read from it.
UNVERIFIED = (
    "The figures below may not be what happened: events were edited, added or deleted in Redis. "
    "`deskgate audit verify` names the first broken link; the SIEM's copy is the witness."
)


def stamp(moment: datetime) -> str:
    """RFC 3339 UTC to the second, as the report prints its times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stats_dict(s: Stats) -> dict[str, Any]:
    return {
        "verifications": s.verifications,
        "verified": s.verified,
        "failed": s.failed,
        "expired": s.expired,
        "error": s.error,
        "abandoned": s.abandoned,
        "open": s.open,
        "review": s.review,
        "pass_rate": s.pass_rate,
        "expired_rate": s.expired_rate,
        "error_rate": s.error_rate,
        "time_to_verify": {"count": s.timed, "p50": s.p50_seconds, "p90": s.p90_seconds},
        "link_caps": s.link_caps,
        "recoveries": s.recoveries,
        "errors": [{"code": c, "label": error_label(c), "count": n} for c, n in s.errors],
        "gates_lifted": s.gates_lifted,
        "lifted_by": [{"actor": a, "count": n} for a, n in s.lifted_by],
        "grants": {
            "opened": s.grants_opened,
            "used": s.grants_used,
            "refused": s.grants_refused,
            "expired": s.grants_expired,
        },
        "actions": {"done": s.actions_done, "failed": s.actions_failed},
    }


def to_dict(report: Report, generated: datetime) -> dict[str, Any]:
    return {
        "report": 1,
        "generated": stamp(generated),
        "since": stamp(report.since),
        "until": stamp(report.until),
        "desk": report.desk,
        "groups": [
            {"desk": g.desk, "reason": g.reason, **stats_dict(g.stats)} for g in report.groups
        ],
        "totals": stats_dict(report.totals),
        "days": [{"date": d.day.isoformat(), **d.counts} for d in report.days],
        "time_to_verify_histogram": [
            {"from": b.low, "to": None if math.isinf(b.high) else b.high, "count": b.count}
            for b in report.histogram
        ],
        "markers_overturned": [
            {"desk": o.desk, "code": o.code, "label": error_label(o.code), "count": o.count}
            for o in report.overturned
        ],
        "skipped_events": report.skipped,
        "trail": {"verified": report.trail_verified, "detail": report.trail},
        "bypasses": bypasses_dict(report.bypasses),
    }


def bypasses_dict(b: Bypasses) -> dict[str, Any]:
    def listed(name: str, pairs: tuple[tuple[str, int], ...]) -> list[dict[str, Any]]:
        return [{name: key, "count": n} for key, n in pairs]

    return {
        "total": b.total,
        "break_glass": b.break_glass,
        "by_actor": listed("actor", b.by_actor),
        "by_action": listed("action", b.by_action),
        "by_severity": listed("severity", b.by_severity),
    }


def to_json(report: Report, generated: datetime) -> str:
    return json.dumps(to_dict(report, generated), indent=2) + "\n"


def _csv_row(desk: str, reason: str, s: Stats, overturned: int | None = None) -> list[str]:
    """``overturned``: markers overturned, on the totals row only (a forged marker has no
    verification, so no reason to count it under; JSON has them per desk and code)."""
    values: list[Any] = [
        desk, reason, s.verifications, s.verified, s.failed, s.expired, s.error, s.abandoned,
        s.open, s.review, s.pass_rate, s.expired_rate, s.error_rate, s.p50_seconds,
        s.p90_seconds, s.timed, s.link_caps, s.recoveries,
        ";".join(f"{code}:{n}" for code, n in s.errors), s.gates_lifted,
        ";".join(f"{actor}:{n}" for actor, n in s.lifted_by), overturned,
        s.grants_opened, s.grants_used, s.grants_refused, s.grants_expired, s.actions_done,
        s.actions_failed,
    ]  # fmt: skip
    return [csv_cell(v) for v in values]


BYPASS_COLUMNS = ("bypasses_by", "name", "count")


def bypass_tables(b: Bypasses) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
    return (("severity", b.by_severity), ("action", b.by_action), ("actor", b.by_actor))


def to_csv(report: Report) -> str:
    """One row per desk and reason, then the totals (desk and reason ``(all)``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for g in report.groups:
        writer.writerow(_csv_row(g.desk, g.reason, g.stats))
    overturned = sum(o.count for o in report.overturned)
    writer.writerow(_csv_row(ALL, ALL, report.totals, overturned))
    b = report.bypasses
    if b.total or b.break_glass:
        # A second table after a blank line, only when there is something to say: the first
        # stays what readers of older reports parse.
        writer.writerow([])
        writer.writerow(BYPASS_COLUMNS)
        for by, pairs in bypass_tables(b):
            writer.writerows([by, csv_cell(name), n] for name, n in pairs)
        writer.writerow(["break_glass", "", b.break_glass])
    return out.getvalue()


def duration(seconds: float | None) -> str:
    """A short, readable duration: 45s, 3m12s, 2h05m, 1d03h."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _short(text: str, width: int) -> str:
    # Printable only: a name from data must not move the terminal's cursor or change its colours.
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= width else text[: width - 1] + "~"


_HEADERS = (
    "verifs", "verified", "failed", "expired", "error", "open", "pass", "p50", "p90", "caps",
    "recov",
)  # fmt: skip


def _table_values(s: Stats) -> tuple[str, ...]:
    return (
        str(s.verifications), str(s.verified), str(s.failed), str(s.expired), str(s.error),
        str(s.open + s.abandoned), percent(s.pass_rate), duration(s.p50_seconds),
        duration(s.p90_seconds), str(s.link_caps), str(s.recoveries),
    )  # fmt: skip


def _group_name(desk: str, reason: str, width: int) -> str:
    """``desk / reason`` in ``width`` characters, the longer of the two shortened first."""
    desk, reason = _short(desk, 200), _short(reason, 200)
    room = width - 3
    while len(desk) + len(reason) > room:
        if len(desk) >= len(reason):
            desk = _short(desk, len(desk) - 1)
        else:
            reason = _short(reason, len(reason) - 1)
    return f"{desk} / {reason}"


WIDTH = 100  # the terminal table's width at most


def to_table(report: Report, generated: datetime) -> str:
    """Aligned text for a terminal, at most WIDTH columns (names are shortened to fit)."""
    where = f"desk {_short(report.desk, 40)}" if report.desk else "all desks"
    lines = [
        f"Deskgate report, {where}: verifications opened {stamp(report.since)} to "
        f"{stamp(report.until)}",
        f"generated {stamp(generated)}",
        "",
    ]
    if report.trail_verified is False:  # first, before any figure is believed
        lines += [f"WARNING: {report.trail}.", UNVERIFIED, ""]
    stats = [*(g.stats for g in report.groups), report.totals]
    cells = [_table_values(s) for s in stats]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(_HEADERS)]
    # What is left for the names (never less than the header's width, whatever the numbers).
    room = max(WIDTH - 2 - sum(widths) - len(widths) + 1, len("desk / reason"))
    names = [_group_name(g.desk, g.reason, room) for g in report.groups] + [ALL]
    first = max(len("desk / reason"), *(len(n) for n in names))

    def line(name: str, values: tuple[str, ...]) -> str:
        return f"{name:<{first}}  " + " ".join(
            v.rjust(w) for v, w in zip(values, widths, strict=True)
        )

    lines.append(line("desk / reason", _HEADERS))
    lines.append(line("-" * first, tuple("-" * w for w in widths)))
    lines.extend(line(name, c) for name, c in zip(names, cells, strict=True))
    t = report.totals
    lines += [
        "",
        f"pass = verified / (verified + failed). Of {t.finished} finished: expired "
        f"{percent(t.expired_rate)}, error {percent(t.error_rate)}.",
        "p50, p90: time to verify (flag to confirmed pass). caps: link caps hit. recov: rebuilt",
        "from the ticket's note. open: no outcome (yet, or the ticket was deleted).",
    ]
    if t.errors:
        lines += ["", "top error reasons:"]
        lines += [f"  {n:>5}  {_short(error_label(c), WIDTH - 9)}" for c, n in t.errors[:5]]
    if t.gates_lifted:
        by = ", ".join(f"{_short(a, 30)} ({n})" for a, n in t.lifted_by)
        lines += ["", f"gates lifted before the result: {t.gates_lifted}, by {by}"]
    if report.overturned:
        lines += ["", "verified markers overturned (not written by Deskgate):"]
        lines += [
            f"  {o.count:>5}  {_short(o.desk, 30)}: {_short(error_label(o.code), WIDTH - 45)}"
            for o in report.overturned
        ]
    acting = [g for g in report.groups if g.stats.grants_opened or g.stats.grants_refused]
    if acting:  # a section of its own: the main table already fills the terminal
        lines += ["", "grants (opened / used / refused / expired) and IdP actions (done / failed):"]
        lines += [
            f"  {_group_name(g.desk, g.reason, 60):<60}  {s.grants_opened}/{s.grants_used}/"
            f"{s.grants_refused}/{s.grants_expired}  {s.actions_done}/{s.actions_failed}"
            for g in acting
            for s in (g.stats,)
        ]
    b = report.bypasses
    lines += ["", f"IdP admin actions no verified ticket explains (bypasses): {b.total}"]
    for by, pairs in bypass_tables(b):
        if pairs:
            named = ", ".join(f"{_short(name, 30)} {n}" for name, n in pairs[:5])
            lines.append(_short(f"  by {by}: {named}", WIDTH))
    if b.break_glass:
        lines.append(f"  break-glass actions (info, not bypasses): {b.break_glass}")
    if report.skipped:
        lines += ["", f"{report.skipped} events skipped: not schema-1 audit events"]
    if report.trail_verified:
        lines += ["", f"{report.trail}."]
    return "\n".join(lines) + "\n"
