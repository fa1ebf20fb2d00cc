"""Schema-1 audit events for whole lifecycles, for the report's tests (docs/report.md, the event
table). A path names what happens after the request, step by step:

    verified | failed | expired          requested -> sent -> that outcome
    review+verified (+failed, +expired)  requested -> sent -> review -> that outcome
    error:<code>                         requested -> error (no link went out)
    verified+error:requester_changed     requested -> sent -> verified, overturned to error
    recovered+verified                   requested -> sent -> recovered -> verified
    only-recovered+verified              recovered (its request is not in the trail) -> verified
    open | abandoned                     requested -> sent (-> abandoned)
    lifted+verified                      requested -> sent -> gate lifted by an agent -> verified
    forged                               no verification: the marker audit overturned a
                                         verified marker set by hand (one event)

Every lifecycle also carries the ``ticket.written`` events Deskgate records for its gate and
outcome, which the report must not count.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.demo import SCRIPT
from sandbox.registry import DESKS

_ids = itertools.count(1)

PATHS = (
    "verified", "failed", "expired", "review+verified", "review+failed", "review+expired",
    "error:no_identity", "error:link_cap", "error:refused_by_incode", "error:contact_too_new",
    "verified+error:requester_changed", "recovered+verified", "only-recovered+verified", "open",
    "abandoned",
)  # fmt: skip


def rfc3339(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def outcome_of(path: str) -> str:
    """How the report should count a path: its final outcome, or abandoned / open."""
    last = path.split("+")[-1]
    if last.startswith("error:"):
        return "error"
    return last


@dataclass
class Lifecycle:
    path: str
    opened: datetime
    desk: str = "acme_zendesk"
    reason: str = "mfa_reset"
    took: timedelta = timedelta(minutes=3)  # opened -> the final event
    origin: str = "push"
    actor: str = "9001"  # who lifted the gate ("lifted" step)

    def events(self) -> list[dict[str, Any]]:
        n = next(_ids)
        vid, session = f"v{n:08d}", f"iv{n:022x}"
        base: dict[str, Any] = {
            "schema": 1, "desk": self.desk, "ticket": f"INC{1000000 + n}", "verification": vid,
            "session": "", "requester": f"user{n}", "reason": self.reason, "channel": "",
            "destination": "", "origin": self.origin, "code": "", "detail": "",
            "started_at": rfc3339(self.opened), "sent_at": None,
        }  # fmt: skip
        out: list[dict[str, Any]] = []

        def emit(kind: str, at: datetime, state: str, **fields: Any) -> None:
            out.append(
                {**base, "id": f"e{next(_ids):031x}", "time": rfc3339(at), "event": kind,
                 "state": state, "outcome": "", "state_at": rfc3339(at), **fields}
            )  # fmt: skip

        if self.path == "forged":
            base.update(verification="", requester=f"user{n}", reason="", origin="")
            emit("ticket.marker_overturned", self.opened, "error", code="marker_forged",
                 started_at="")  # fmt: skip
            return out
        steps = self.path.split("+")
        final_at = self.opened + self.took
        if steps[0] == "only-recovered":
            base.update(origin="recovery", session=session)
            emit("verification.recovered", self.opened, "sent")
            steps = steps[1:]
        else:
            emit("verification.requested", self.opened, "requested")
            if not steps[0].startswith("error:"):
                sent_at = self.opened + timedelta(seconds=2)
                base.update(
                    session=session, channel="EMAIL", destination="j***@acme.test",
                    sent_at=rfc3339(sent_at),
                )  # fmt: skip
                emit("verification.sent", sent_at, "sent")
                emit("ticket.written", sent_at, "sent", code="gate")
        for i, step in enumerate(steps):
            at = final_at - timedelta(seconds=len(steps) - 1 - i)
            if step == "recovered":
                # Rebuilt from the gate note: started_at is when the rebuilt record was made.
                emit("verification.recovered", at, "sent", origin="recovery",
                     started_at=rfc3339(at))  # fmt: skip
            elif step == "review":
                emit("verification.review", at, "review")
                emit("ticket.written", at, "review", code="outcome")
            elif step == "lifted":
                emit("ticket.gate_lifted", at, "sent", code="hold_lifted", actor=self.actor)
            elif step == "abandoned":
                emit("verification.abandoned", at, "sent")
            elif step != "open":
                outcome, _, code = step.partition(":")
                emit(
                    f"verification.{outcome}", at, outcome, outcome=outcome, code=code,
                    detail=f"ended {outcome}",
                )  # fmt: skip
                if i == len(steps) - 1:  # an overturned result is never written
                    emit("ticket.written", at, outcome, code="outcome")
        return out


def trail(lifecycles: list[Lifecycle]) -> list[dict[str, Any]]:
    """The events of several lifecycles in the order they happened, as the trail records them."""
    events = [e for lc in lifecycles for e in lc.events()]
    return sorted(events, key=lambda e: str(e["time"]))


# The trails the report's tests share: a week of hand-checked lifecycles and the demo's script.
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 8, tzinfo=UTC)


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def hand_checked() -> list[Lifecycle]:
    zd = [
        Lifecycle("verified", at(1), took=minutes(1)),
        Lifecycle("verified", at(1, 11), took=minutes(2)),
        Lifecycle("verified", at(2), took=minutes(10)),
        Lifecycle("review+verified", at(3), took=minutes(60)),
        Lifecycle("failed", at(3, 12)),
        Lifecycle("expired", at(4), took=minutes(31)),
        Lifecycle("error:link_cap", at(5), took=timedelta(seconds=1)),
        Lifecycle("error:no_identity", at(5, 11), took=timedelta(seconds=1)),
        Lifecycle("open", at(7, 23)),
    ]
    sn = {"desk": "acme_servicenow", "reason": "account_unlock"}
    return [
        *zd,
        Lifecycle("only-recovered+verified", at(2), took=minutes(4), **sn),
        Lifecycle("verified+error:requester_changed", at(3), took=minutes(5), **sn),
        Lifecycle("recovered+verified", at(6), took=minutes(5), **sn),
        # Opened in the last hour of the period, verified two hours later: it counts.
        Lifecycle("verified", at(7, 23), took=minutes(120), reason="account_unlock"),
        # Opened before and at the end of the period: neither counts.
        Lifecycle("verified", SINCE - minutes(1), took=minutes(3)),
        Lifecycle("failed", UNTIL),
    ]


def demo_lifecycles() -> list[Lifecycle]:
    """The demo's script (sandbox/demo.py) as the audit trail would record it, on every desk."""
    errors = {"Gus (walk-in)": "no_identity", "Finn Berg": "refused_by_incode"}
    paths = {"pass": "verified", "fail": "failed", "review+pass": "review+verified",
             "lifted+pass": "lifted+verified"}  # fmt: skip
    out = []
    for i, desk in enumerate(DESKS):
        for j, (who, _email, _enrolled, how, part, _expect) in enumerate(SCRIPT):
            if how == "hand":
                out.append(Lifecycle("forged", at(2, 9 + i, j), desk=desk))
                continue
            path = f"error:{errors[who]}" if part == "-" else paths.get(part, "expired")
            out.append(Lifecycle(path, at(2, 9 + i, j), desk=desk, origin=how))
    return out


def bypass(
    when: datetime, actor: str, action: str, severity: str, idp_event: str, idp: str = "acme_okta"
) -> dict[str, Any]:
    """An ``idp.bypass`` event (``idp.break_glass`` when ``severity`` is info), as
    ``worker.idp.bypass`` records it."""
    glass = severity == "info"
    return {
        "schema": 1, "id": f"e{next(_ids):031x}", "time": rfc3339(when),
        "event": "idp.break_glass" if glass else "idp.bypass", "desk": "", "ticket": "",
        "verification": "", "session": "", "requester": "", "reason": "", "channel": "",
        "destination": "j***@acme.test", "origin": "", "state": "", "outcome": "",
        "code": "break_glass" if glass else severity, "detail": "", "started_at": "",
        "sent_at": None, "state_at": None, "requester_key": "", "idp": idp, "actor": actor,
        "target": "00utarget", "action": action, "severity": severity, "idp_event": idp_event,
    }  # fmt: skip


def bypasses() -> list[dict[str, Any]]:
    """A week's bypasses: two by one admin (one of them delivered twice), one by another, one
    break-glass action, and one outside the period."""
    return [
        bypass(at(2, 9), "00uhelpdesk", "reset_mfa", "high", "ev1"),
        bypass(at(2, 9), "00uhelpdesk", "reset_mfa", "high", "ev1"),  # a redelivery
        bypass(at(3, 14), "00uhelpdesk", "unlock", "medium", "ev2"),
        bypass(at(4, 8), "00uother", "reset_mfa", "medium", "ev3", idp="acme_entra"),
        bypass(at(5, 8), "00uglass", "reset_password", "info", "ev4"),
        bypass(UNTIL + timedelta(hours=1), "00uhelpdesk", "unlock", "high", "ev5"),
    ]
