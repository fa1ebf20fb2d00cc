"""What the audit events say about verifications in a period: one pass over the events.

Definitions (docs/report.md says the same for readers):

- A verification counts in the period when its opening event (``verification.requested``, or
  ``verification.recovered`` when no request was seen for it) is in ``[since, until)``; it is
  counted once under the desk and reason of that event. Events of other verifications (opened
  before the period or after it) are ignored, so consecutive periods never share a verification.
- Its outcome is the last final event seen (verified, failed, expired, error): a result
  overturned to error because the requester changed counts as an error. Events read after
  ``until`` still count for the verifications opened in the period, so a report on a past period
  shows how its verifications ended.
- pass rate = verified / (verified + failed); manual reviews count by their decision; expired,
  error and still open verifications are left out. expired rate and error rate are over finished
  verifications (verified + failed + expired + error).
- time to verify = the verified event's time - ``started_at`` of the request (when Deskgate
  opened it, on a push or a poll). Verifications known only from a recovery are left out: their
  ``started_at`` is when Redis's copy was rebuilt, not when the ticket was flagged.
- link caps = errors with code ``link_cap`` or ``link_cap_long``; recoveries = verifications with a
  ``verification.recovered`` event.

- abandoned = the ticket was deleted before an outcome; open = no outcome yet.
- gates lifted = verifications whose gate someone lifted before the result
  (``ticket.gate_lifted``), with the agents who did it most often (``actor``: a desk user id or
  user name). Markers overturned = ``ticket.marker_overturned`` events in ``[since, until)``, per
  desk and code: a forged marker has no verification to count under.
- grants and IdP actions (docs/idp.md, "Grants") count by their own events in ``[since, until)``,
  under the desk and reason of the event: grants opened, used, refused and expired; actions done
  and failed.
- bypasses = ``idp.bypass`` events (docs/bypass.md) in ``[since, until)``, each IdP log entry
  once, by actor, by action and by severity; break-glass reports (``idp.break_glass``) are
  counted apart. They belong to an IdP, not to a desk: a desk filter leaves them whole.

Memory: one small record per verification in the period (redelivered events and overturned
results need it) and one float per verified one, so the percentiles are exact (nearest rank)
rather than read off a histogram. Measured (bench/report.py): a year of a desk with 100,000
verifications keeps 32 MiB at its peak (about 330 bytes each) and takes 3.4 s on a loaded core.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from worker.audit import ADMIN_EVENTS

SCHEMA = 1
OUTCOMES = ("verified", "failed", "expired", "error")
# How a verification stands at the end of the report: a final outcome, abandoned (its ticket was
# deleted: no outcome will come) or still open.
DAY_KEYS = (*OUTCOMES, "abandoned", "open")
LINK_CAPS = frozenset({"link_cap", "link_cap_long"})
REQUESTED, RECOVERED = "verification.requested", "verification.recovered"
REVIEW, ABANDONED = "verification.review", "verification.abandoned"
LIFTED, OVERTURNED = "ticket.gate_lifted", "ticket.marker_overturned"
TOP_ACTORS = 5
_FINAL = {f"verification.{o}": o for o in OUTCOMES}
# One bit per verification event: a redelivered event (same kind, same verification) is seen once.
_KINDS = {
    name: 1 << i
    for i, name in enumerate(
        (REQUESTED, RECOVERED, "verification.sent", REVIEW, ABANDONED, *_FINAL, LIFTED)
    )
}
# Grant and action events -> what they count (by their own time, not their verification's).
IDP_EVENTS = {
    "grant.opened": "grants_opened",
    "grant.used": "grants_used",
    "grant.refused": "grants_refused",
    "grant.expired": "grants_expired",
    "action.done": "actions_done",
    "action.failed": "actions_failed",
}
# Time-to-verify histogram: upper bounds in seconds (the last bucket is open-ended).
BUCKETS: tuple[float, ...] = (60, 120, 300, 600, 1800, 3600, 4 * 3600, 86400, math.inf)


@dataclass(slots=True)
class _Verification:
    group: tuple[str, str]
    day: date
    started: float | None  # epoch seconds of started_at, None when only recovered
    seen: int = 0
    outcome: str = ""
    code: str = ""
    verified_at: float | None = None
    abandoned: bool = False
    review: bool = False
    recovered: bool = False
    lifted_by: str = ""  # who lifted its gate before the result (the first lift), if anyone

    @property
    def standing(self) -> str:
        """Its outcome, or "abandoned" or "open" (one of DAY_KEYS)."""
        return self.outcome or ("abandoned" if self.abandoned else "open")


@dataclass(frozen=True)
class Stats:
    """Counts for one desk and reason, or for everything (``Report.totals``)."""

    verifications: int = 0
    verified: int = 0
    failed: int = 0
    expired: int = 0
    error: int = 0
    abandoned: int = 0  # the ticket was deleted before an outcome
    open: int = 0  # no final outcome yet (requested, sent or in review)
    review: int = 0  # went through a manual review (whatever its outcome)
    link_caps: int = 0
    recoveries: int = 0
    errors: tuple[tuple[str, int], ...] = ()  # error codes, most frequent first
    timed: int = 0  # verified verifications with a time to verify
    p50_seconds: float | None = None
    p90_seconds: float | None = None
    gates_lifted: int = 0  # verifications whose gate was lifted before the result
    lifted_by: tuple[tuple[str, int], ...] = ()  # the agents who lifted most, most first
    grants_opened: int = 0
    grants_used: int = 0
    grants_refused: int = 0
    grants_expired: int = 0
    actions_done: int = 0
    actions_failed: int = 0

    @property
    def finished(self) -> int:
        return self.verified + self.failed + self.expired + self.error

    @property
    def pass_rate(self) -> float | None:
        return _ratio(self.verified, self.verified + self.failed)

    @property
    def expired_rate(self) -> float | None:
        return _ratio(self.expired, self.finished)

    @property
    def error_rate(self) -> float | None:
        return _ratio(self.error, self.finished)


@dataclass(frozen=True)
class Group:
    desk: str
    reason: str
    stats: Stats


@dataclass(frozen=True)
class Day:
    day: date
    counts: Mapping[str, int]  # DAY_KEYS -> verifications opened that day, by outcome


@dataclass(frozen=True)
class Bucket:
    low: float  # seconds, inclusive
    high: float  # seconds, exclusive; math.inf for the last bucket
    count: int


@dataclass(frozen=True)
class Overturned:
    desk: str
    code: str  # marker_forged, requester_changed_after
    count: int


@dataclass(frozen=True)
class Bypasses:
    """Admin actions in an IdP no verified ticket explained, counted most frequent first."""

    total: int = 0
    break_glass: int = 0  # reported as info, never bypasses
    by_actor: tuple[tuple[str, int], ...] = ()
    by_action: tuple[tuple[str, int], ...] = ()
    by_severity: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    desk: str | None
    groups: tuple[Group, ...]
    totals: Stats
    days: tuple[Day, ...]
    histogram: tuple[Bucket, ...]
    skipped: int  # events that were not schema-1 audit events (wrong version, missing fields)
    # Whether the audit trail read verified (its hash chain): None when it could not be checked
    # (an export read from a file); ``trail`` says what was found either way.
    trail_verified: bool | None = None
    trail: str = ""
    overturned: tuple[Overturned, ...] = ()  # markers overturned in the period, by desk and code
    bypasses: Bypasses = Bypasses()


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as an aware UTC datetime, or None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # the schema's times are UTC with an offset; a naive one is not ours
    return parsed.astimezone(UTC)


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest rank: the smallest kept value with at least ``p`` of them at or below it."""
    if not ordered:
        return None
    return ordered[max(math.ceil(p * len(ordered)) - 1, 0)]


def build(
    events: Iterable[Mapping[str, Any]],
    since: datetime,
    until: datetime,
    desk: str | None = None,
) -> Report:
    """Aggregate audit events (in the order they were recorded) for verifications opened in
    ``[since, until)``, on one desk or all of them."""
    lo, hi = since.timestamp(), until.timestamp()
    seen: dict[str, _Verification] = {}
    idp: dict[tuple[str, str], Counter[str]] = {}
    idp_ids: set[str] = set()  # grant and action events counted (a redelivery is seen once)
    # One copy of each group key and day for all the verifications that share it.
    shared: dict[Any, Any] = {}
    skipped = 0
    overturned: Counter[tuple[str, str]] = Counter()
    overturns_seen: set[str] = set()
    bypasses = _BypassTally()
    for event in events:
        kind = event.get("event")
        if kind in ADMIN_EVENTS:
            continue  # about Deskgate's set-up, not a verification
        at = parse_time(event.get("time"))
        if kind == OVERTURNED and event.get("schema") == SCHEMA and at is not None:
            where, eid = str(event.get("desk") or ""), str(event.get("id") or "")
            if lo <= at.timestamp() < hi and desk in (None, where) and eid not in overturns_seen:
                overturns_seen.add(eid)  # a second delivery of the same event counts once
                overturned[(where, str(event.get("code") or "unknown"))] += 1
        if kind in BYPASS_EVENTS and event.get("schema") == SCHEMA and at is not None:
            if lo <= at.timestamp() < hi:
                bypasses.add(event)
            continue
        vid, ev_desk, reason = (event.get(k) for k in ("verification", "desk", "reason"))
        if isinstance(kind, str) and kind.startswith("privacy."):
            continue  # a data-subject request (worker/commands/privacy.py): of no verification
        if isinstance(kind, str) and kind in IDP_EVENTS and event.get("schema") == SCHEMA:
            event_id = str(event.get("id") or "")
            if (
                at is not None
                and lo <= at.timestamp() < hi
                and isinstance(ev_desk, str)
                and ev_desk
                and desk in (None, ev_desk)
                and event_id not in idp_ids
            ):
                idp_ids.add(event_id)
                idp.setdefault((ev_desk, str(reason or "")), Counter())[IDP_EVENTS[kind]] += 1
            continue
        if (
            event.get("schema") != SCHEMA
            or at is None
            or not isinstance(kind, str)
            or not all(isinstance(s, str) and s for s in (vid, ev_desk))
            or not isinstance(reason, str)
        ):
            skipped += 1
            continue
        assert isinstance(vid, str) and isinstance(ev_desk, str)  # narrowed above, for mypy
        bit = _KINDS.get(kind)
        if bit is None or (desk is not None and ev_desk != desk):
            continue  # ticket.written and other desks' events say nothing the report counts
        v = seen.get(vid)
        if v is None:
            if kind not in (REQUESTED, RECOVERED) or not lo <= at.timestamp() < hi:
                continue  # opened outside the period (or its opening was not recorded)
            # A request's started_at is when Deskgate opened it (its own time, if absent).
            started = (parse_time(event.get("started_at")) or at) if kind == REQUESTED else None
            group, day = (ev_desk, reason), at.date()
            v = seen[vid] = _Verification(
                shared.setdefault(group, group),
                shared.setdefault(day, day),
                started.timestamp() if started else None,
            )
        if v.seen & bit:
            continue  # a second delivery of the same event
        v.seen |= bit
        if kind == RECOVERED:
            v.recovered = True
        elif kind == REVIEW:
            v.review = True
        elif kind == ABANDONED:
            v.abandoned = True
        elif kind == LIFTED:
            v.lifted_by = str(event.get("actor") or "unknown")
        elif kind in _FINAL:
            v.outcome = _FINAL[kind]
            v.code = str(event.get("code") or "")
            v.verified_at = at.timestamp() if v.outcome == "verified" else None
    report = _summarise(seen.values(), idp, since, until, desk, skipped, bypasses.bypasses())
    return replace(
        report, overturned=tuple(Overturned(d, c, n) for (d, c), n in sorted(overturned.items()))
    )


BYPASS_EVENTS = frozenset({"idp.bypass", "idp.break_glass"})


def _ranked(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class _BypassTally:
    seen: set[tuple[str, str]] = field(default_factory=set)  # (idp, idp_event): each once
    actors: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    severities: Counter[str] = field(default_factory=Counter)
    break_glass: int = 0

    def add(self, event: Mapping[str, Any]) -> None:
        key = (str(event.get("idp") or ""), str(event.get("idp_event") or ""))
        if key in self.seen:
            return
        self.seen.add(key)
        if event.get("event") == "idp.break_glass":
            self.break_glass += 1
            return
        self.actors[str(event.get("actor") or "unknown")] += 1
        self.actions[str(event.get("action") or "unknown")] += 1
        self.severities[str(event.get("severity") or "unknown")] += 1

    def bypasses(self) -> Bypasses:
        return Bypasses(
            total=sum(self.severities.values()),
            break_glass=self.break_glass,
            by_actor=_ranked(self.actors),
            by_action=_ranked(self.actions),
            by_severity=_ranked(self.severities),
        )


@dataclass
class _Tally:
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    lifters: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)

    def add(self, v: _Verification) -> None:
        self.counts["verifications"] += 1
        self.counts[v.standing] += 1
        self.counts["review"] += v.review
        self.counts["recoveries"] += v.recovered
        if v.lifted_by:
            self.lifters[v.lifted_by] += 1
        if v.outcome == "error":
            self.errors[v.code or "unknown"] += 1
            self.counts["link_caps"] += v.code in LINK_CAPS
        if v.verified_at is not None and v.started is not None:
            # Milliseconds, as the events' times carry: no float noise in JSON and CSV.
            self.durations.append(round(max(v.verified_at - v.started, 0.0), 3))

    def stats(self) -> Stats:
        ordered = sorted(self.durations)
        c = self.counts
        return Stats(
            verifications=c["verifications"],
            verified=c["verified"],
            failed=c["failed"],
            expired=c["expired"],
            error=c["error"],
            abandoned=c["abandoned"],
            open=c["open"],
            review=c["review"],
            link_caps=c["link_caps"],
            recoveries=c["recoveries"],
            # Most frequent first, then by code, so the order is the same on every run.
            errors=tuple(sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0]))),
            timed=len(ordered),
            p50_seconds=percentile(ordered, 0.5),
            p90_seconds=percentile(ordered, 0.9),
            gates_lifted=self.lifters.total(),
            lifted_by=tuple(
                sorted(self.lifters.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ACTORS]
            ),
            **{name: c[name] for name in IDP_EVENTS.values()},
        )


def _summarise(
    verifications: Iterable[_Verification],
    idp: Mapping[tuple[str, str], Counter[str]],
    since: datetime,
    until: datetime,
    desk: str | None,
    skipped: int,
    bypasses: Bypasses,
) -> Report:
    groups: dict[tuple[str, str], _Tally] = {}
    total = _Tally()
    days: dict[date, Counter[str]] = {}
    for v in verifications:
        groups.setdefault(v.group, _Tally()).add(v)
        total.add(v)
        days.setdefault(v.day, Counter())[v.standing] += 1
    for group, counts in idp.items():
        groups.setdefault(group, _Tally()).counts.update(counts)
        total.counts.update(counts)
    histogram = Counter(next(i for i, b in enumerate(BUCKETS) if d < b) for d in total.durations)
    first = since.astimezone(UTC).date()
    last = (until.astimezone(UTC) - timedelta(microseconds=1)).date()
    calendar = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return Report(
        since=since,
        until=until,
        desk=desk,
        groups=tuple(Group(d, r, groups[(d, r)].stats()) for d, r in sorted(groups)),
        totals=total.stats(),
        days=tuple(Day(d, {k: days.get(d, Counter())[k] for k in DAY_KEYS}) for d in calendar),
        histogram=tuple(
            Bucket(BUCKETS[i - 1] if i else 0, b, histogram[i]) for i, b in enumerate(BUCKETS)
        ),
        skipped=skipped,
        bypasses=bypasses,
    )
