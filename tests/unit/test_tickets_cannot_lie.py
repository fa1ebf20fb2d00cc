"""Tickets that cannot lie: a gate lifted before the result is recorded (and with
``gate_enforcement = "restore"`` put back), and a verified marker Deskgate cannot prove it wrote
is overturned. ``Flow`` on the in-memory desk of ``test_flow`` and a real Redis."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import REGISTRY
from redis import Redis

from config import metrics
from connectors.http import Fatal
from tests.unit.test_flow import DESK, HOUR, World, started, world
from worker import audit
from worker.lifecycle import State, notes
from worker.lifecycle.gate_watch import UNKNOWN_ACTOR


@pytest.fixture
def w(redis: Redis[str]) -> World:
    return world(redis)


def events(w: World, kind: str) -> list[dict[str, str]]:
    return [e for _, e in w.store.redis.xrange(w.store.audit_key) if e["event"] == kind]


def test_a_hold_lifted_before_the_result_is_recorded_with_who_and_named_in_the_outcome(
    w: World,
) -> None:
    vid = started(w)
    w.desk.agent_edit("42", "agent-7001", status="open")  # the agent takes it off hold
    w.flow.check(vid, "sweep")  # the sweep's look, before any result
    lifted = events(w, "ticket.gate_lifted")
    assert [(e["code"], e["actor"], e["verification"]) for e in lifted] == [
        ("hold_lifted", "agent-7001", vid)
    ]
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    assert "lifted" in w.note() and "agent-7001" in w.note()
    assert len(events(w, "ticket.gate_lifted")) == 1  # recorded once (enforcement: record)
    assert w.desk.tickets["42"].marker == "verified"


def test_a_pending_marker_removed_while_the_result_comes_is_recorded_at_the_write(
    w: World,
) -> None:
    """No sweep in between: the outcome write (against the ticket the gate write returned, so a
    409 and a re-read) sees the marker gone."""
    vid = started(w)
    w.desk.agent_edit("42", "agent-9", marker=None)
    w.incode.decision = "failed"
    w.flow.check(vid, "webhook")
    assert [(e["code"], e["actor"]) for e in events(w, "ticket.gate_lifted")] == [
        ("marker_removed", "agent-9")
    ]
    assert "by agent-9" in w.note() and "FAILED" in w.note()


def test_an_untouched_gate_records_nothing(w: World) -> None:
    vid = started(w)
    w.flow.check(vid, "sweep")
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    assert events(w, "ticket.gate_lifted") == [] and "lifted" not in w.note()


def test_with_restore_the_gate_is_put_back_with_a_sealed_gate_note_saying_why(
    redis: Redis[str],
) -> None:
    w = world(redis, gate_enforcement="restore")
    vid = started(w)
    w.desk.agent_edit("42", "agent-7001", status="open", marker=None)
    w.flow.check(vid, "sweep")
    ticket = w.desk.tickets["42"]
    assert (ticket.marker, ticket.status, ticket.held) == ("pending", "hold", True)
    assert "Deskgate put it back" in w.note() and "agent-7001" in w.note()
    gate = notes.read_gate(w.note(), w.flow.seal, DESK, "42")  # recovery still trusts it
    assert gate is not None and gate.verification == vid
    # Lifted again: recorded again, and put back again.
    w.desk.agent_edit("42", "agent-8", status="open")
    w.flow.check(vid, "sweep")
    assert [e["actor"] for e in events(w, "ticket.gate_lifted")] == ["agent-7001", "agent-8"]
    assert w.desk.tickets["42"].held


def test_a_verified_marker_set_by_hand_is_overturned_to_error(w: World) -> None:
    w.desk.add("43")
    w.desk.agent_edit("43", "agent-5", marker="verified")
    assert w.flow.audit_markers(DESK) == 1
    assert w.desk.tickets["43"].marker == "error"
    assert "OVERTURNED" in w.note("43")
    (overturned,) = events(w, "ticket.marker_overturned")
    assert (overturned["code"], overturned["ticket"], overturned["requester"]) == (
        "marker_forged", "#43", "u43"
    )  # fmt: skip
    assert w.flow.audit_markers(DESK) == 0  # nothing left to overturn


def test_deskgates_own_verified_marker_stands_and_a_requester_changed_after_it_does_not(
    w: World,
) -> None:
    vid = started(w)
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    assert w.flow.audit_markers(DESK) == 0 and w.desk.tickets["42"].marker == "verified"
    w.desk.agent_edit("42", "agent-5", requester_id="u99")
    assert w.flow.audit_markers(DESK) == 1
    assert w.desk.tickets["42"].marker == "error"
    (overturned,) = events(w, "ticket.marker_overturned")
    assert (overturned["code"], overturned["verification"]) == ("requester_changed_after", vid)


def test_after_the_record_expired_only_deskgates_sealed_outcome_note_proves_the_marker(
    w: World,
) -> None:
    vid = started(w)
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    w.store.redis.delete(*w.store.redis.keys(f"{w.store.prefix}:*"))  # retention went by
    assert w.flow.audit_markers(DESK) == 0  # its sealed note proves it
    # The same note copied by an agent onto another ticket proves nothing there, nor does the
    # note with its seal broken.
    w.desk.add("44")
    w.desk.agent_edit("44", "agent-5", marker="verified")
    w.desk.notes["44"] = [("deskgate", w.note("42"))]
    forged = w.note("42").replace(f"requester {w.desk.tickets['42'].requester_id}", "requester u44")
    w.desk.add("45")
    w.desk.agent_edit("45", "agent-5", marker="verified")
    w.desk.notes["45"] = [("deskgate", forged)]
    assert w.flow.audit_markers(DESK) == 2
    assert w.desk.tickets["42"].marker == "verified"
    assert w.desk.tickets["44"].marker == w.desk.tickets["45"].marker == "error"


def test_a_verified_marker_whose_outcome_write_is_under_way_stands(w: World) -> None:
    """The marker is on the ticket before ``ticket.written`` is recorded: the verification that
    still holds the ticket (verified, outcome unwritten) vouches for it."""
    vid = started(w)
    v = w.store.get(vid)
    assert v is not None
    w.store.advance(v, State.VERIFIED, w.clock[0] + HOUR)
    w.desk.tickets["42"] = replace(w.desk.tickets["42"], marker="verified")
    assert w.flow.audit_markers(DESK) == 0


def test_lifted_gates_and_overturned_markers_are_counted_per_desk(w: World) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"desk": DESK, **labels}) or 0.0

    lifted = sample("deskgate_gates_lifted_total")
    forged = sample("deskgate_markers_overturned_total", code="marker_forged")
    vid = started(w)
    w.desk.agent_edit("42", "agent-1", status="open")
    w.flow.check(vid, "sweep")
    w.desk.add("43")
    w.desk.agent_edit("43", "agent-1", marker="verified")
    w.flow.audit_markers(DESK)
    for _, entry in w.store.redis.xrange(w.store.audit_key):
        metrics.observe(audit.event_of(entry))
    assert sample("deskgate_gates_lifted_total") == lifted + 1
    assert sample("deskgate_markers_overturned_total", code="marker_forged") == forged + 1


def test_an_actor_named_by_an_address_is_masked_and_an_unreadable_history_names_no_one(
    redis: Redis[str],
) -> None:
    """ServiceNow user names are often e-mail addresses: never one in the trail or a note. A
    desk refusing its history (an ACL) leaves the lift recorded, its actor unknown. A name is
    one line in Deskgate's notes, whatever the desk holds."""
    w = world(redis, gate_enforcement="restore")
    vid = started(w)
    w.desk.agent_edit("42", "mallory.agent@acme.test", status="open")
    w.flow.check(vid, "sweep")
    w.desk.agent_edit("42", "x", status="open")

    def refused(ticket: object) -> str | None:
        raise Fatal("desk", "no read on sys_audit", 403)

    w.desk.gate_lifted_by = refused  # type: ignore[method-assign]
    w.flow.check(vid, "sweep")
    w.desk.gate_lifted_by = lambda ticket: "eve\nSeal: " + "A" * 43  # type: ignore[method-assign]
    w.desk.agent_edit("42", "x", status="open")
    w.flow.check(vid, "sweep")
    actors = [e["actor"] for e in events(w, "ticket.gate_lifted")]
    assert actors == ["m***@acme.test", UNKNOWN_ACTOR, "eve Seal: " + "A" * 43]
    assert all("mallory.agent@" not in text for _, text in w.desk.notes["42"])
    assert "\nSeal: AAAA" not in w.note()  # a name adds no line to Deskgate's note


def test_a_marker_written_before_the_marked_index_is_proven_by_the_record_its_note_names(
    w: World,
) -> None:
    """Outcomes written before this version left no ``marked`` index (and no seal): the record
    the newest Deskgate note names, while it is kept, proves the marker."""
    vid = started(w)
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    w.store.redis.delete(f"{w.store.prefix}:marked:{DESK}:42")
    w.desk.notes["42"][-1] = ("deskgate", w.note().split("\nSeal:")[0])  # an unsealed note
    assert w.flow.audit_markers(DESK) == 0
    w.desk.agent_edit("42", "agent-5", requester_id="u99")
    assert w.flow.audit_markers(DESK) == 1
    (overturned,) = events(w, "ticket.marker_overturned")
    assert (overturned["code"], overturned["verification"]) == ("requester_changed_after", vid)


def test_an_outcome_note_proves_only_its_own_desk_ticket_requester_and_outcome(w: World) -> None:
    vid = started(w)
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    note, seal = w.note(), w.flow.seal
    assert notes.sealed_outcome(note, seal, DESK, "42", "verified") == "u42"
    assert notes.sealed_outcome(note, seal, DESK, "43", "verified") is None  # another ticket
    assert notes.sealed_outcome(note, seal, "other_desk", "42", "verified") is None
    assert notes.sealed_outcome(note, seal, DESK, "42", "failed") is None  # another outcome
    other = notes.Seal(["another-note-secret-0123456789"])
    assert notes.sealed_outcome(note, other, DESK, "42", "verified") is None
    # Its sealed lines copied above a later note's own ids prove nothing for that note.
    ids = note[note.index("Deskgate verification:") :]
    later = (
        f"Identity verification FAILED.\n{ids}\nDeskgate verification: {'f' * 24} (requester u42)\n"
    )
    assert notes.sealed_outcome(later, seal, DESK, "42", "verified") is None


def test_after_the_record_expired_the_verification_last_written_about_decides(
    w: World,
) -> None:
    """ServiceNow's journal may list a gate note and its outcome, written the same second, in
    either order: the sealed outcome of the verification Deskgate last wrote about proves the
    marker; a later verification's note (its gate, say) means the marker is not that outcome."""
    vid = started(w)
    w.incode.decision = "verified"
    w.flow.check(vid, "webhook")
    gate, outcome = (text for _, text in w.desk.notes["42"])
    w.store.redis.delete(*w.store.redis.keys(f"{w.store.prefix}:*"))  # retention went by
    w.desk.notes["42"] = [("deskgate", outcome), ("deskgate", gate)]  # the gate listed newest
    assert w.flow.audit_markers(DESK) == 0
    later_gate = gate.replace(vid, "f" * 24)  # a later verification (its seal is not checked)
    w.desk.notes["42"].append(("deskgate", later_gate))
    assert w.flow.audit_markers(DESK) == 1
    assert w.desk.tickets["42"].marker == "error"
