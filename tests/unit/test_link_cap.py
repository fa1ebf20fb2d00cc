"""The cap on verification links against a real Redis: N per requester and per ticket in a
sliding window, counted atomically, a verification counted once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from redis import Redis

from connectors.zendesk.config import ZendeskDeskConfig
from worker.caps import LinkCap, LinkCapReached, requester_key

WINDOW = 3600.0


@pytest.fixture
def cap(redis: Redis[str]) -> LinkCap:
    return LinkCap(redis, "dgtest")


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


def test_defaults_allow_three_links_an_hour() -> None:
    config = desk()
    assert (config.max_links_per_requester, config.max_links_per_ticket) == (3, 3)
    assert config.link_cap_window_minutes == 60


def test_given_the_ticket_cap_when_one_more_is_asked_then_refused_with_when_to_retry(
    cap: LinkCap,
) -> None:
    take(cap, "v1", now=1000)
    take(cap, "v2", now=1100)
    with pytest.raises(LinkCapReached) as refused:
        take(cap, "v3", now=1200)
    assert refused.value.scope == "ticket" and refused.value.limit == 2
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


def test_phone_numbers_are_one_requester_however_they_are_written() -> None:
    assert requester_key("SMS", "+1 (415) 555-0100") == requester_key("SMS", "+14155550100")
    assert requester_key("SMS", "+14155550100") != requester_key("EMAIL", "+14155550100")
    assert "jane" not in requester_key("EMAIL", "jane@acme.test")  # no address in Redis keys


def test_a_verification_asking_again_is_counted_once(cap: LinkCap, redis: Redis[str]) -> None:
    for _ in range(5):  # a retried task: Incode timed out, the task runs again
        take(cap, "v1")
    take(cap, "v2")
    assert redis.zcard("dgtest:cap:ticket:acme:1") == 2
    assert redis.zcard(f"dgtest:cap:who:{requester_key('EMAIL', 'jane@acme.test')}") == 2


def test_keys_expire_after_the_window(cap: LinkCap, redis: Redis[str]) -> None:
    take(cap, "v1")
    assert 0 < redis.ttl("dgtest:cap:ticket:acme:1") <= WINDOW


def test_a_lowered_cap_waits_until_enough_links_leave_the_window(cap: LinkCap) -> None:
    loose = desk(max_links_per_ticket=3, max_links_per_requester=3)
    for n, at in enumerate((1000, 1100, 1200)):
        take(cap, f"v{n}", now=at, config=loose)
    tight = desk(max_links_per_ticket=1, max_links_per_requester=10)
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
