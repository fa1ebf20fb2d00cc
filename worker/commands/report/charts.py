"""Inline SVG charts for the HTML report, drawn in Python: no script, no network.

Every string from data goes through ``html.escape`` here; the numbers are formatted by us.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from worker.commands.report.aggregate import DAY_KEYS, Bucket, Day

# The Okabe-Ito palette: told apart with the common colour-vision deficiencies.
COLOURS = {
    "verified": "#009E73",
    "failed": "#D55E00",
    "expired": "#E69F00",
    "error": "#CC79A7",
    "abandoned": "#999999",
    "open": "#56B4E9",
}
INK, GRID, FONT = "#1f2328", "#d0d7de", "font-size:12px;fill:#1f2328"
WIDTH, HEIGHT = 880, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 44


def _ticks(top: int) -> list[int]:
    """At most six round steps from 0 to at least ``top``."""
    if top <= 0:
        return [0, 1]
    step = 1
    for candidate in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        step = candidate
        if top / step <= 5:
            break
    else:
        step = 10 ** math.ceil(math.log10(top / 5))
    return list(range(0, math.ceil(top / step) * step + 1, step))


def _frame(chart_id: str, title: str, desc: str, body: list[str], ticks: list[int]) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    top = ticks[-1]
    axis = []
    for t in ticks:
        y = TOP + plot_h - plot_h * t / top
        axis.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" style="{FONT}">{t}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" class="chart">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>'
        + "".join(axis)
        + "".join(body)
        + f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        f'stroke="{INK}" stroke-width="1"/></svg>'
    )


def per_day(days: Sequence[Day]) -> str:
    """Verifications opened each day, stacked by how they stand."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(d.counts.values()) for d in days]
    ticks = _ticks(max(totals, default=0))
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.7, 1.0)
    every = max(1, math.ceil(len(days) / 10))  # at most about ten date labels
    body = []
    for i, d in enumerate(days):
        x = LEFT + i * slot + (slot - bar) / 2
        y: float = TOP + plot_h
        for key in DAY_KEYS:
            n = d.counts.get(key, 0)
            if not n:
                continue
            h = plot_h * n / ticks[-1]
            y -= h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[key]}"><title>{d.day.isoformat()}: {n} {key}</title></rect>'
            )
        if i % every == 0:
            body.append(
                f'<text x="{x + bar / 2:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                f'style="{FONT}">{d.day.strftime("%b %d")}</text>'
            )
    body.append(
        f'<text x="{LEFT}" y="{HEIGHT - 6}" style="{FONT}">day the verification was opened '
        "(UTC)</text>"
    )
    described = ", ".join(
        f"{d.day.isoformat()}: {t}" for d, t in zip(days, totals, strict=True) if t
    )
    return _frame(
        "per-day",
        "Verifications per day, by outcome",
        f"Verifications opened per day, stacked by outcome. {described or 'None in the period.'}",
        body,
        ticks,
    )


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


def bucket_label(b: Bucket) -> str:
    """``< 1 min``, ``1-2 min``, ``4-24 h``, ``> 24 h``: short enough for the axis."""
    if b.low == 0:
        return f"< {_span(b.high)}"
    if math.isinf(b.high):
        return f"> {_span(b.low)}"
    low, high = _span(b.low), _span(b.high)
    if low.split()[1] == high.split()[1]:
        return f"{low.split()[0]}\u2013{high}"
    return f"{low}\u2013{high}"


def histogram(buckets: Sequence[Bucket]) -> str:
    """How long the employees who passed took, from the flag to the passed check."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ticks = _ticks(max((b.count for b in buckets), default=0))
    slot = plot_w / max(len(buckets), 1)
    bar = slot * 0.8
    body = []
    for i, b in enumerate(buckets):
        x = LEFT + i * slot + (slot - bar) / 2
        h = plot_h * b.count / ticks[-1]
        label = bucket_label(b)
        body.append(
            f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
            f'fill="{COLOURS["verified"]}"><title>{label}: {b.count}</title></rect>'
            f'<text x="{x + bar / 2:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
            f'style="{FONT}">{label}</text>'
        )
        if b.count:
            body.append(
                f'<text x="{x + bar / 2:.1f}" y="{TOP + plot_h - h - 4:.1f}" '
                f'text-anchor="middle" style="{FONT}">{b.count}</text>'
            )
    body.append(
        f'<text x="{LEFT}" y="{HEIGHT - 6}" style="{FONT}">time from the flag to the passed '
        "check</text>"
    )
    described = ", ".join(f"{bucket_label(b)}: {b.count}" for b in buckets)
    return _frame(
        "time-to-verify",
        "Time to verify",
        f"Verified verifications by time to verify. {described}.",
        body,
        ticks,
    )
