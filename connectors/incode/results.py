"""Reading an Incode result as a decision (Incode's documented rule: ``overall.status``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Decision = Literal["verified", "failed", "review", "pending"]
FINISHED = frozenset({"ONBOARDING_FINISHED", "POST_PROCESSING_FINISHED"})
DECIDED = frozenset({"MANUAL_REVIEW_APPROVED", "MANUAL_REVIEW_REJECTED"})


@dataclass(frozen=True)
class Result:
    decision: Decision
    score_status: str  # overall.status: OK, WARN, FAIL, UNKNOWN (or whatever Incode adds)
    onboarding_status: str | None  # read only when the score does not decide
    findings: tuple[str, ...]  # checks that did not pass, e.g. "liveness.livenessScore: FAIL"


def _walk(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    if isinstance(node, dict):
        if "status" in node and isinstance(node.get("status"), str):
            yield path, node
        for key, child in node.items():
            if isinstance(child, dict | list):
                yield from _walk(child, (*path, key))
    elif isinstance(node, list):
        for child in node:
            yield from _walk(child, path)


def findings(score: dict[str, Any]) -> tuple[str, ...]:
    """Every sub-check whose status is not OK, named by module and key."""
    found = []
    for path, check in _walk(score, ()):
        status = str(check.get("status", "")).upper()
        if not path or path == ("overall",) or status in ("OK", "", "UNKNOWN"):
            continue
        parts = [p for p in path if p != "overall"]
        key = check.get("key")
        if key and key != parts[-1]:
            parts.append(str(key))
        found.append(f"{'.'.join(parts)}: {status}")
    # A module's own overall adds nothing when one of its checks is already named.
    named = [f for f in found if not any(o.startswith(f.split(":")[0] + ".") for o in found)]
    return tuple(dict.fromkeys(named))


def has_result(onboarding_status: str | None) -> bool:
    """The onboarding status says the session is over (finished, or a reviewer decided): its
    result exists. Incode documents no time at which that happened."""
    return onboarding_status in FINISHED | DECIDED


def interpret(score: dict[str, Any], onboarding_status: str | None) -> Result:
    """Incode's documented rule: decide on ``overall.status`` (OK / WARN / FAIL), never on numbers.

    OK and FAIL decide. Otherwise a manual review decision in the onboarding status decides; a
    finished session with WARN/UNKNOWN (or a status Incode adds later) needs review; an unfinished
    session is still pending.
    """
    overall = score.get("overall") if isinstance(score.get("overall"), dict) else {}
    status = str((overall or {}).get("status") or "UNKNOWN").upper()
    checks = findings(score)
    if status == "OK":
        return Result("verified", status, onboarding_status, checks)
    if status == "FAIL":
        return Result("failed", status, onboarding_status, checks)
    if onboarding_status == "MANUAL_REVIEW_APPROVED":
        return Result("verified", status, onboarding_status, checks)
    if onboarding_status == "MANUAL_REVIEW_REJECTED":
        return Result("failed", status, onboarding_status, checks)
    if onboarding_status in FINISHED:
        return Result("review", status, onboarding_status, checks)
    return Result("pending", status, onboarding_status, checks)
