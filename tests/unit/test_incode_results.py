"""Reading Incode's score as a decision: overall.status decides, never the numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.incode import findings, interpret

FIXTURES = Path(__file__).parent.parent / "fixtures"


def score(status: str) -> dict[str, Any]:
    return {"overall": {"value": "87.0", "status": status, "key": None}}


def test_given_the_documented_failing_score_then_failed_with_the_checks_named() -> None:
    # The score's shape as Incode documents it (a real client's test fixture has the same);
    # overall set to FAIL for this case.
    data = json.loads((FIXTURES / "incode" / "score_fail.json").read_text())
    result = interpret(data, None)
    assert result.decision == "failed"
    assert result.findings == (
        "idValidation.idSpecific.expirationDateValidity: FAIL",
        "idValidation.customFields.firstNameMatch: FAIL",
    )


@pytest.mark.parametrize(
    ("overall", "onboarding", "decision"),
    [
        ("OK", None, "verified"),
        ("ok", None, "verified"),
        ("FAIL", "MANUAL_REVIEW_APPROVED", "failed"),  # the score's FAIL is never overridden
        ("WARN", None, "pending"),
        ("WARN", "ONBOARDING_FINISHED", "review"),
        ("UNKNOWN", "ONBOARDING_FINISHED", "review"),
        ("MANUAL_PENDING", "ONBOARDING_FINISHED", "review"),  # unrecognised value: a person looks
        ("WARN", "MANUAL_REVIEW_APPROVED", "verified"),
        ("WARN", "MANUAL_REVIEW_REJECTED", "failed"),
        ("UNKNOWN", "ID_VALIDATION_FINISHED", "pending"),
        ("UNKNOWN", None, "pending"),
    ],
)
def test_decision_table(overall: str, onboarding: str | None, decision: str) -> None:
    assert interpret(score(overall), onboarding).decision == decision


def test_given_a_score_without_overall_then_pending_not_verified() -> None:
    assert interpret({}, None).decision == "pending"
    assert interpret({"overall": None}, "ONBOARDING_FINISHED").decision == "review"


def test_findings_skip_passing_checks_and_name_warnings() -> None:
    data = {
        "liveness": {
            "overall": {"status": "WARN"},
            "livenessScore": {"status": "WARN", "key": "x"},
        },
        "faceRecognition": {"overall": {"status": "OK"}},
        "overall": {"status": "WARN"},
    }
    assert findings(data) == ("liveness.livenessScore.x: WARN",)  # the module overall is implied
