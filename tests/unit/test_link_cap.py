"""The cap on verification links against a real Redis: N per requester and per ticket in a
sliding window, counted atomically, a verification counted once."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest
from pydantic import ValidationError
from redis import Redis

from connectors.zendesk.config import ZendeskDeskConfig
from worker.lifecycle.caps import LinkCap, LinkCapReached
from worker.lifecycle.pseudonym import Pseudonyms

WINDOW = 3600.0
DAY = 24 * WINDOW


@pytest.fixture
def cap(redis: Redis[str]) -> LinkCap:
    return LinkCap(redis, "dgtest", Pseudonyms(["a-note-secret-of-16+"], "requester"))


def desk(**caps: int) -> ZendeskDeskConfig:
    return ZendeskDeskConfig.model_validate(
        {
            "kind": "zendesk",
            "base_url": "http://127.0.0.1:9",
            "email": "agent@acme.test",
            "api_token": "t",
            "triggers": {"idv_mfa_reset": "MFA reset"},
            **caps,
        }
    )


CONFIG = desk(max_links_per_requester=3, max_links_per_ticket=2, link_cap_window_minutes=60)


def take(cap: LinkCap, vid: str, *, ticket: str = "1", to: str = "jane@acme.test",
         now: float = 1000.0, config: ZendeskDeskConfig = CONFIG, **kw: Any) -> None:  # fmt: skip
    cap.take(
        verification=vid,
        desk=kw.get("desk", "acme"),
        ticket_id=ticket,
        channel=kw.get("channel", "EMAIL"),
        destination=to,
        config=config,
        now=now,
    )


def test_defaults_allow_three_links_an_hour_and_five_a_day() -> None:
    config = desk()
    assert (config.max_links_per_requester, config.max_links_per_ticket) == (3, 3)
    assert config.link_cap_window_minutes == 60
    assert (config.max_links_per_requester_long, config.link_cap_long_window_hours) == (5, 24)


@pytest.mark.parametrize(
    ("caps", "named"),
    [
        ({"link_cap_long_window_hours": 1}, "link_cap_long_window_hours must be longer"),
        ({"link_cap_window_minutes": 1440}, "link_cap_long_window_hours must be longer"),
        ({"max_links_per_requester_long": 2}, "max_links_per_requester_long must be at least"),
        ({"link_cap_long_window_hours": 169}, "link_cap_long_window_hours"),
        ({"max_links_per_requester_long": 0}, "max_links_per_requester_long"),
    ],
)
def test_a_long_window_cap_that_means_nothing_stops_start_up_naming_it(
    caps: dict[str, int], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        desk(**caps)


def test_given_the_long_window_cap_then_a_slow_flood_is_refused_until_a_day_has_passed(
    cap: LinkCap,
) -> None:
    """Three links an hour stay under the short cap; the sixth within a day does not."""
    config = desk()
    for n, at in enumerate((1000, 1100, 1200, 1000 + WINDOW + 1, 1000 + 2 * WINDOW)):
        take(cap, f"v{n}", ticket=str(n), now=at, config=config)
    with pytest.raises(LinkCapReached) as refused:
        take(cap, "v9", ticket="9", now=1000 + 3 * WINDOW, config=config)
    assert (refused.value.scope, refused.value.window, refused.value.code) == (
        "requester", "long", "link_cap_long",
    )  # fmt: skip
    assert refused.value.retry_at == 1000 + DAY  # when the day's first link leaves the window
    assert "cap of 5 verification links for this requester in 24 hours" in str(refused.value)
    take(cap, "v10", ticket="10", now=1000 + DAY + 1, config=config)


def test_the_requesters_key_lives_as_long_as_the_long_window(
    cap: LinkCap, redis: Redis[str]
) -> None:
    take(cap, "v1", config=desk())
    assert (
        WINDOW < redis.ttl(f"dgtest:cap:who:{cap.requester_key('EMAIL', 'jane@acme.test')}") <= DAY
    )
    assert 0 < redis.ttl("dgtest:cap:ticket:acme:1") <= WINDOW


def test_given_the_ticket_cap_when_one_more_is_asked_then_refused_with_when_to_retry(
    cap: LinkCap,
) -> None:
    take(cap, "v1", now=1000)
    take(cap, "v2", now=1100)
    with pytest.raises(LinkCapReached) as refused:
        take(cap, "v3", now=1200)
    assert refused.value.scope == "ticket" and refused.value.limit == 2
    assert (refused.value.window, refused.value.code) == ("short", "link_cap")
    assert refused.value.retry_at == 1000 + WINDOW  # when the oldest link leaves the window
    assert "cap of 2 verification links for this ticket in 1 hour" in str(refused.value)
    assert "flag the ticket again after 01:16 UTC on 1970-01-01" in str(refused.value)


def test_a_refused_request_takes_no_place(cap: LinkCap, redis: Redis[str]) -> None:
    take(cap, "v1")
    take(cap, "v2")
    for vid in ("v3", "v4", "v5"):
        with pytest.raises(LinkCapReached):
            take(cap, vid)
    assert redis.zcard("dgtest:cap:ticket:acme:1") == 2
    # The window slides: once the first link is an hour old, one more may go out.
    take(cap, "v6", now=1000 + WINDOW + 1)


def test_given_the_requester_cap_then_other_tickets_for_the_same_person_are_refused(
    cap: LinkCap,
) -> None:
    for n in range(3):
        take(cap, f"v{n}", ticket=str(n), now=1000 + n)
    with pytest.raises(LinkCapReached) as refused:
        take(cap, "v9", ticket="9", to=" JANE@acme.test", now=1010)  # same inbox, other spelling
    assert refused.value.scope == "requester" and refused.value.limit == 3
    assert "for this requester" in str(refused.value)
    # The cap follows the person across desks, and does not touch anyone else.
    with pytest.raises(LinkCapReached):
        take(cap, "v10", ticket="9", desk="other_desk", now=1010)
    take(cap, "v11", ticket="9", to="sam@acme.test", now=1010)


def test_phone_numbers_are_one_requester_however_they_are_written(cap: LinkCap) -> None:
    key = cap.requester_key
    assert key("SMS", "+1 (415) 555-0100") == key("SMS", "+14155550100")
    assert key("SMS", "+14155550100") != key("EMAIL", "+14155550100")
    assert "jane" not in key("EMAIL", "jane@acme.test")  # no address in Redis keys


def test_the_requester_key_is_keyed_so_a_guessed_number_cannot_be_checked(
    redis: Redis[str],
) -> None:
    """A plain SHA-256 of a phone number is reversed by hashing every number; the key is an HMAC
    under a secret, so it differs from it, and from one under another secret."""
    mine = LinkCap(redis, "p", Pseudonyms(["a-note-secret-of-16+"], "requester"))
    theirs = LinkCap(redis, "p", Pseudonyms(["other-note-secret-16"], "requester"))
    plain = hashlib.sha256(b"SMS:+14155550100").hexdigest()
    assert mine.requester_key("SMS", "+14155550100") not in plain
    assert mine.requester_key("SMS", "+14155550100") != theirs.requester_key("SMS", "+14155550100")


def test_a_rotated_note_secret_keeps_counting_the_links_sent_before_it(
    redis: Redis[str],
) -> None:
    """The requester key is keyed by note_secret: rotating it used to start every cap afresh."""
    old, new = "the-old-note-secret-16", "the-new-note-secret-16"
    before = LinkCap(redis, "dgtest", Pseudonyms([old], "requester"))
    for i in range(3):
        take(before, f"v{i}", ticket=str(i))
    after = LinkCap(redis, "dgtest", Pseudonyms([new, old], "requester"))  # the overlap
    with pytest.raises(LinkCapReached) as reached:
        take(after, "v3", ticket="3")
    assert reached.value.scope == "requester"
    old_key = f"dgtest:cap:who:{before.requester_key('EMAIL', 'jane@acme.test')}"
    new_key = f"dgtest:cap:who:{after.requester_key('EMAIL', 'jane@acme.test')}"
    assert not redis.exists(old_key)  # moved under the new key, with its life
    assert redis.zcard(new_key) == 3 and redis.ttl(new_key) > 0


def test_a_verification_asking_again_is_counted_once(cap: LinkCap, redis: Redis[str]) -> None:
    for _ in range(5):  # a retried task: Incode timed out, the task runs again
        take(cap, "v1")
    take(cap, "v2")
    assert redis.zcard("dgtest:cap:ticket:acme:1") == 2
    assert redis.zcard(f"dgtest:cap:who:{cap.requester_key('EMAIL', 'jane@acme.test')}") == 2


def test_keys_expire_after_the_window(cap: LinkCap, redis: Redis[str]) -> None:
    take(cap, "v1")
    assert 0 < redis.ttl("dgtest:cap:ticket:acme:1") <= WINDOW


def test_a_lowered_cap_waits_until_enough_links_leave_the_window(cap: LinkCap) -> None:
    loose = desk(max_links_per_ticket=3, max_links_per_requester=3)
    for n, at in enumerate((1000, 1100, 1200)):
        take(cap, f"v{n}", now=at, config=loose)
    tight = desk(
        max_links_per_ticket=1, max_links_per_requester=10, max_links_per_requester_long=10
    )
    with pytest.raises(LinkCapReached) as refused:
        take(cap, "v9", now=1300, config=tight)
    assert refused.value.retry_at == 1200 + WINDOW  # only then is fewer than one in the window


def test_given_both_caps_reached_then_the_later_retry_time_is_given(cap: LinkCap) -> None:
    take(cap, "v1", ticket="7", now=1000)  # the requester's oldest link, another ticket
    take(cap, "v2", now=1100)
    take(cap, "v3", now=1200)
    config = desk(max_links_per_ticket=2, max_links_per_requester=3)
    with pytest.raises(LinkCapReached) as refused:
        take(cap, "v4", now=1300, config=config)
    # The requester has a place at 1000 + 1 h, the ticket only at 1100 + 1 h.
    assert (refused.value.scope, refused.value.retry_at) == ("ticket", 1100 + WINDOW)


def test_concurrent_requests_never_overshoot(cap: LinkCap, redis: Redis[str]) -> None:
    outcomes: list[bool] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        try:
            take(cap, f"v{n}", ticket=str(n))
            ok = True
        except LinkCapReached:
            ok = False
        with lock:
            outcomes.append(ok)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(True) == 3 and outcomes.count(False) == 17
