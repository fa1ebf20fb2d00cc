"""``deskgate explain``'s reading of flags: which tags are taken for a mistyped trigger."""

from __future__ import annotations

from connectors.http import accepted_request_id
from worker.commands.explain import distance, near_misses

TRIGGERS = {"idv_mfa_reset": "MFA reset", "idv_account_unlock": "account unlock"}


def test_edit_distance() -> None:
    assert distance("idv_mfa_reset", "idv_mfa_reset") == 0
    assert distance("idv_mfa_rest", "idv_mfa_reset") == 1
    assert distance("idv-mfa_resett", "idv_mfa_reset") == 2
    assert distance("", "abc") == 3


def test_a_tag_one_or_two_edits_from_a_trigger_is_a_near_miss() -> None:
    found = near_misses(["idv_mfa_rest", "vip", "idv_account_unlok"], TRIGGERS)
    assert found == {"idv_mfa_rest": "idv_mfa_reset", "idv_account_unlok": "idv_account_unlock"}


def test_an_idv_tag_far_from_every_trigger_is_a_near_miss_too() -> None:
    assert near_misses(["idv_password"], TRIGGERS) == {"idv_password": "idv_mfa_reset"}


def test_triggers_and_unrelated_tags_are_not_near_misses() -> None:
    assert near_misses(["idv_mfa_reset", "billing", "vip", "mfa"], TRIGGERS) == {}


def test_a_request_id_is_taken_only_when_short_and_plain() -> None:
    assert accepted_request_id("abc-123_X.y:z") == "abc-123_X.y:z"
    for bad in (None, "", "a" * 65, "has space", 'quote"', "new\nline", "é"):
        replaced = accepted_request_id(bad)
        assert replaced != bad and len(replaced) == 32 and replaced.isalnum()
