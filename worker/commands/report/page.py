"""The report as one self-contained HTML page: inline CSS and SVG, no script, no network.

The Content-Security-Policy forbids every fetch, so a page that tried to load anything would
show it (and the browser test would see the refusal). Every string from data (desk names,
reasons, codes) is escaped: a ticket is attacker-controlled, and so is what it leads to.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from worker.commands.report import charts
from worker.commands.report.aggregate import DAY_KEYS, Bypasses, Report, Stats
from worker.commands.report.formats import UNVERIFIED, bypass_tables, duration, percent, stamp
from worker.commands.report.labels import STANDING, error_label

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f8fa; color: #1f2328;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 24px 48px; }
header { border-bottom: 1px solid #d0d7de; margin-bottom: 20px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 20px 0 4px; }
p.lead { margin: 4px 0 12px; max-width: 760px; }
p.meta, p.note { color: #57606a; margin: 0 0 12px; font-size: 13px; }
div.broken { background: #ffebe9; border: 2px solid #cf222e; border-radius: 8px; color: #82071e;
  padding: 12px 20px; margin-bottom: 20px; font-weight: 600; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 4px 20px 16px;
  margin-bottom: 20px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(124px, 1fr)); gap: 12px;
  margin-bottom: 20px; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 12px 14px; }
.card .value { font-size: 26px; font-weight: 600; }
.card .label { color: #57606a; font-size: 13px; }
svg.chart { width: 100%; height: auto; display: block; margin-top: 8px; }
ul.legend { list-style: none; padding: 0; margin: 8px 0 0; display: grid; gap: 4px;
  grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin-top: 8px; }
caption { text-align: left; color: #57606a; padding-bottom: 6px; }
th, td { padding: 6px 6px; border-bottom: 1px solid #d0d7de; text-align: right;
  white-space: nowrap; }
th:first-child, td:first-child, th.text, td.text { text-align: left; }
td.text { white-space: normal; }
thead th { background: #f6f8fa; font-weight: 600; white-space: normal; vertical-align: bottom; }
.eyebrow { color: #57606a; font-size: 13px; font-weight: 600; letter-spacing: .06em;
  text-transform: uppercase; margin: 0; }
tfoot td, tfoot th { font-weight: 600; border-top: 2px solid #1f2328; }
dl { margin: 8px 0 0; }
dt { font-weight: 600; margin-top: 8px; }
dd { margin: 0 0 0 0; color: #1f2328; }
table.bypasses { width: auto; min-width: 240px; display: inline-table; margin-right: 24px;
  vertical-align: top; }
table.bypasses tr.high td { background: #ffebe9; }
"""

_COLUMNS = (
    ("verifications", "Total"), ("verified", "Verified"), ("failed", "Failed"),
    ("expired", "Expired"), ("error", "Error"), ("open", "Open"), ("pass", "Pass rate"),
    ("p50", "Time to verify p50"), ("p90", "Time to verify p90"), ("caps", "Link caps"),
    ("recoveries", "Recoveries"), ("grants", "Grants opened"), ("actions", "IdP actions done"),
)  # fmt: skip


def _n(count: int) -> str:
    return f"{count:,}"


def _cells(s: Stats) -> list[str]:
    return [
        _n(s.verifications), _n(s.verified), _n(s.failed), _n(s.expired), _n(s.error),
        _n(s.open + s.abandoned), percent(s.pass_rate), duration(s.p50_seconds),
        duration(s.p90_seconds), _n(s.link_caps), _n(s.recoveries), _n(s.grants_opened),
        _n(s.actions_done),
    ]  # fmt: skip


def _card(value: str, label: str) -> str:
    return (
        f'<div class="card"><div class="value">{value}</div><div class="label">{label}</div></div>'
    )


def _legend() -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{charts.COLOURS[k]}"></span>'
        f"<strong>{k}</strong>: {escape(STANDING[k])}</li>"
        for k in DAY_KEYS
    )
    return f'<ul class="legend">{items}</ul>'


def _groups_table(report: Report) -> str:
    head = "".join(f'<th scope="col">{label}</th>' for _, label in _COLUMNS)
    rows = "".join(
        f'<tr><th scope="row" class="text">{escape(g.desk)}</th><td class="text">'
        f"{escape(g.reason)}</td>" + "".join(f"<td>{c}</td>" for c in _cells(g.stats)) + "</tr>"
        for g in report.groups
    )
    if not rows:
        rows = f'<tr><td colspan="{len(_COLUMNS) + 2}">No verifications in this period.</td></tr>'
    total = "".join(f"<td>{c}</td>" for c in _cells(report.totals))
    return (
        '<div class="scroll"><table><caption>One row per helpdesk (desk) and reason the ticket '
        "was flagged for. Time to verify: p50 is the median, p90 the time 90% stayed within."
        "</caption>"
        f'<thead><tr><th scope="col">Desk</th><th scope="col" class="text">Reason</th>{head}'
        f"</tr></thead><tbody>{rows}</tbody>"
        f'<tfoot><tr><th scope="row">All</th><td></td>{total}</tr></tfoot></table></div>'
    )


def _errors_table(s: Stats) -> str:
    if not s.errors:
        return '<p class="note">No verification ended in error.</p>'
    rows = "".join(
        f'<tr><td class="text"><code>{escape(code)}</code></td>'
        f'<td class="text">{escape(error_label(code))}</td><td>{_n(n)}</td>'
        f"<td>{percent(n / s.error)}</td></tr>"
        for code, n in s.errors
    )
    return (
        "<table><caption>Why verifications ended in error, most frequent first.</caption>"
        '<thead><tr><th scope="col">Code</th><th scope="col" class="text">What it means</th>'
        f'<th scope="col">Count</th><th scope="col">Share of errors</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _tampering(report: Report) -> str:
    """Gates lifted before the result (top agents) and verified markers overturned."""
    t = report.totals
    if not t.gates_lifted and not report.overturned:
        return (
            '<p class="note">No gate was lifted before its result, and no verified marker had '
            "to be overturned.</p>"
        )
    lifted = "".join(
        f'<tr><td class="text"><code>{escape(actor)}</code></td><td>{_n(n)}</td></tr>'
        for actor, n in t.lifted_by
    )
    overturned = "".join(
        f'<tr><th scope="row" class="text">{escape(o.desk)}</th>'
        f'<td class="text"><code>{escape(o.code)}</code></td>'
        f'<td class="text">{escape(error_label(o.code))}</td>'
        f"<td>{_n(o.count)}</td></tr>"
        for o in report.overturned
    )
    return (
        f'<p class="note" id="gates-lifted">{_n(t.gates_lifted)} verifications had their gate '
        "lifted (the ticket taken off hold, or its pending marker removed) before the result."
        "</p>"
        + (
            "<table><caption>Who lifted them, most often first (as the helpdesk names its "
            'agents).</caption><thead><tr><th scope="col" class="text">Agent</th>'
            f'<th scope="col">Gates lifted</th></tr></thead><tbody>{lifted}</tbody></table>'
            if lifted
            else ""
        )
        + (
            "<table><caption>Verified markers Deskgate did not write, set to error."
            '</caption><thead><tr><th scope="col">Desk</th><th scope="col" class="text">Code'
            '</th><th scope="col" class="text">What it means</th><th scope="col">Markers</th>'
            f"</tr></thead><tbody>{overturned}</tbody></table>"
            if overturned
            else ""
        )
    )


def _bypasses(b: Bypasses) -> str:
    """The bypasses by severity, action and actor: one small table each."""
    if not b.total:
        text = "No admin action in an identity provider went around the verification."
        return f'<p class="note" id="no-bypasses">{text}</p>'
    tables = "".join(
        f'<table class="bypasses"><thead><tr><th scope="col" class="text">By {by}</th>'
        '<th scope="col">Count</th></tr></thead><tbody>'
        + "".join(
            f'<tr class="{"high" if (by, name) == ("severity", "high") else ""}">'
            f'<td class="text"><code>{escape(name)}</code></td><td>{_n(n)}</td></tr>'
            for name, n in pairs
        )
        + "</tbody></table>"
        for by, pairs in bypass_tables(b)
    )
    return f'<div class="scroll">{tables}</div>'


DEFINITIONS = (
    ("Verification", "One request to Incode to check the identity of the employee on one "
     "ticket. It counts in the period when Deskgate opened it (when the flagged ticket reached "
     "Deskgate by push or poll)."),
    ("Pass rate", "Verified divided by verified plus failed: of the employees who finished the "
     "check, the share who passed. A manual review counts as its decision. Expired, error and "
     "open verifications are left out."),
    ("Expired and error rates", "Shares of the finished verifications (verified, failed, "
     "expired and error)."),
    ("Time to verify", "From the moment Deskgate opened the verification to the moment Incode "
     "confirmed the pass; p50 is the median, p90 the time 90% of them stayed within. "
     "Verifications rebuilt after a data loss are left out, since their start is not known."),
    ("Link cap", "Deskgate sends at most a few links per employee and per ticket within an "
     "hour, so a flood of flags cannot flood an employee's inbox; one more ends in error."),
    ("Recovery", "A verification Deskgate rebuilt from its own sealed note on the ticket after "
     "its database lost the record."),
    ("Gate lifted", "Someone took a held ticket off hold, or removed its pending marker, before "
     "the result: work could have gone ahead for a caller nobody had verified."),
    ("Marker overturned", "A ticket showed verified without Deskgate having written it (set by "
     "hand, or the requester changed afterwards): Deskgate set it to error."),
    ("Bypass", "An admin action in the identity provider (an MFA reset, an unlock, a password "
     "reset) that no verified ticket explains: someone went around the verification. High: "
     "the employee's last verification failed, or the employee is an admin."),
)  # fmt: skip


def to_html(report: Report, generated: datetime) -> str:
    t = report.totals
    where = f"desk {escape(report.desk)}" if report.desk else "all desks"
    period = f"{stamp(report.since)} to {stamp(report.until)}"
    cards = "".join(
        (
            _card(_n(t.verifications), "verifications"),
            _card(percent(t.pass_rate), "pass rate"),
            _card(duration(t.p50_seconds), "median time to verify"),
            _card(percent(t.expired_rate), f"expired ({_n(t.expired)} of {_n(t.finished)})"),
            _card(percent(t.error_rate), f"error ({_n(t.error)} of {_n(t.finished)})"),
            _card(_n(t.link_caps), "link caps hit"),
            _card(_n(t.recoveries), "recoveries"),
            _card(_n(t.gates_lifted), "gates lifted early"),
            _card(_n(sum(o.count for o in report.overturned)), "markers overturned"),
            _card(_n(report.bypasses.total), "bypasses"),
        )
    )
    definitions = "".join(f"<dt>{term}</dt><dd>{text}</dd>" for term, text in DEFINITIONS)
    skipped = (
        f'<p class="note">{report.skipped} events were skipped: they were not audit events of '
        "the version this report reads.</p>"
        if report.skipped
        else ""
    )
    trail = (
        f'<div class="broken" role="alert">{escape(report.trail[:1].upper() + report.trail[1:])}.'
        f" {escape(UNVERIFIED)}</div>"
        if report.trail_verified is False
        else ""
    )
    trail_note = f'<p class="note">{escape(report.trail)}.</p>' if report.trail_verified else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Identity verification report: {period}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<header>
<p class="eyebrow">Deskgate</p>
<h1>Identity verification report</h1>
<p class="lead">Before a helpdesk agent does something risky for an employee (reset their
multi-factor login, unlock an account), Deskgate asks Incode to check that the person asking is
really that employee: Incode sends the employee a link to a selfie and ID check, and Deskgate holds
the ticket until the result is back. This page counts those checks.</p>
<p class="meta">Verifications opened from {period} (UTC), {where}. Generated {stamp(generated)}.
</p>
</header>
{trail}
<div class="cards">{cards}</div>
<section>
<h2>Verifications per day</h2>
<p class="note">Each bar is the verifications opened that day, coloured by how they ended.</p>
{charts.per_day(report.days)}
{_legend()}
</section>
<section>
<h2>Time to verify</h2>
<p class="note">How long employees who passed took, from the flag to Incode's confirmed pass
({_n(t.timed)} verifications; median {duration(t.p50_seconds)}, 90% within
{duration(t.p90_seconds)}).</p>
{charts.histogram(report.histogram)}
</section>
<section>
<h2>By desk and reason</h2>
{_groups_table(report)}
</section>
<section>
<h2>Top error reasons</h2>
{_errors_table(t)}
</section>
<section>
<h2>Gates lifted and markers overturned</h2>
{_tampering(report)}
<h2>Bypasses</h2>
<p class="note">Admin actions in the identity provider that no verified ticket explains
({_n(report.bypasses.total)}; break-glass actions, reported apart:
{_n(report.bypasses.break_glass)}).</p>
{_bypasses(report.bypasses)}
</section>
<section>
<h2>How to read the numbers</h2>
<dl>{definitions}</dl>
{skipped}
{trail_note}
</section>
</main>
</body>
</html>
"""
