from __future__ import annotations

import io
import json
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from config.logging import configure_logging
from config.privacy import (
    display_url,
    mask_destination,
    mask_email,
    mask_phone,
    scrub,
    url_credentials,
)


def test_masks_keep_only_what_an_agent_needs_to_recognise() -> None:
    assert mask_email("jane.doe@acme.com") == "j***@acme.com"
    assert mask_phone("+1 (415) 555-0100") == "***0100"
    assert mask_destination("SMS", "+14155550100") == "***0100"
    assert mask_destination("EMAIL", "x@y.io") == "x***@y.io"


def test_scrub_masks_addresses_and_numbers_in_free_text_but_not_ids_or_dates() -> None:
    text = "to bob.smith@corp.example or +44 20 7946 0958, ticket 1764135042 on 2026-11-26"
    out = scrub(text)
    assert "bob.smith" not in out and "7946" not in out
    assert "b***@corp.example" in out and "***0958" in out
    assert "1764135042" in out and "2026-11-26" in out


def test_logs_never_carry_secrets_or_full_addresses() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    structlog.get_logger("t").info(
        "sent",
        destination="jane.doe@acme.com",
        api_token="tok-123",
        url="https://verify.example/v/abc",
        note="call +1 415 555 0100",
    )
    line = json.loads(stream.getvalue())
    assert line["api_token"] == "[redacted]" and line["url"] == "[redacted]"
    assert line["destination"] == "j***@acme.com"
    assert "555 0100" not in line["note"]


# -- the formats the review found unmasked -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked", "gone"),
    [
        ("call 415-555-0134 now", "call ***0134 now", "555"),
        ("call (415) 555-0134 now", "call ***0134 now", "555"),
        ("call 415.555.0134", "call ***0134", "555"),
        ("call +1 415 555 0134", "call ***0134", "555"),
        ("sms 4155550134.", "sms ***0134.", "415555"),
        ("sms 14155550134", "sms ***0134", "415555"),
        ("mail jane@localhost", "mail j***@localhost", "jane"),
        ("mail jane@[127.0.0.1]", "mail j***@[127.0.0.1]", "jane"),
        ("mail jösé@exämple.com", "mail j***@exämple.com", "jösé"),
        ("mail jose\u0301@example.com", "mail j***@example.com", "jose"),
        ("<jane.doe+idv@acme.test>", "<j***@acme.test>", "jane.doe"),
        ("q?email=jane%40acme.com&x=1", "q***@acme.com&x=1", "jane"),
        ("?to=%2B14155550134", "?to=***0134", "415555"),
        ("sms x4155550134", "sms x***0134", "415555"),
        ("id 4155550134_ok", "id ***0134_ok", "415555"),
        ("call 415-555-0134x12", "call ***0134x12", "415-555"),
        ("uk 07700 900123", "uk ***0123", "07700"),
        ("london 020 7946 0958", "london ***0958", "7946"),
        ("intl 0044 20 7946 0958", "intl ***0958", "7946"),
    ],
)
def test_scrub_masks_every_format_of_an_address_or_number(
    text: str, masked: str, gone: str
) -> None:
    assert scrub(text) == masked
    assert gone not in scrub(text)


@pytest.mark.parametrize(
    "text",
    [
        "interview 5f2a93b1c0d4e5f60718293a",  # Incode's 24-hex ids
        "interview 123456789012345678901234",  # ... even when every character is a digit
        "verification 550e8400-e29b-41d4-a716-446655440000",  # a UUID's last group
        "ticket 48213 and INC0010003",  # short ids
        "at 1764135042 (epoch s) or 1764135042123 (ms)",  # epoch seconds and milliseconds
        "took 0.4155550134 s",  # a decimal fraction
        "on 2026-11-26T10:15:00+00:00",
        "dated 01-12-2026, build 0.4.12, code 007",  # leading zeros, too few digits
        "sys_id 9d385017c611228701d22104cc95c371",  # ServiceNow's 32-hex ids
    ],
)
def test_scrub_leaves_ids_epochs_and_dates_alone(text: str) -> None:
    assert scrub(text) == text


# -- properties ----------------------------------------------------------------------------

_letters = st.characters(categories=["Ll", "Lu", "Lo"])
_local_tail = st.text(
    st.one_of(_letters, st.sampled_from(list("0123456789._%+-'/=?^`{|}~!#$&"))), max_size=20
)
_label = st.builds(
    lambda head, tail: head + tail,
    _letters,
    st.text(st.one_of(_letters, st.sampled_from(list("0123456789-"))), max_size=10).map(
        lambda t: t.rstrip("-")
    ),
)
_domain = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(lambda ip: f"[{ip}]"),
)
emails = st.builds(
    lambda first, tail, domain: (first + tail, domain), _letters, _local_tail, _domain
)
_d = st.sampled_from("0123456789")
_nanp = st.tuples(
    st.sampled_from("23456789"), st.text(_d, min_size=2, max_size=2),
    st.sampled_from("23456789"), st.text(_d, min_size=6, max_size=6),
).map("".join)  # fmt: skip
phones = st.one_of(
    _nanp,  # 4155550134
    _nanp.map(lambda n: "1" + n),  # 14155550134
    _nanp.map(lambda n: f"{n[:3]}-{n[3:6]}-{n[6:]}"),
    _nanp.map(lambda n: f"({n[:3]}) {n[3:6]}-{n[6:]}"),
    _nanp.map(lambda n: f"{n[:3]}.{n[3:6]}.{n[6:]}"),
    _nanp.map(lambda n: f"+1 {n[:3]} {n[3:6]} {n[6:]}"),
    st.tuples(st.sampled_from("23456789"), st.text(_d, min_size=9, max_size=13)).map(
        "".join
    ),  # a bare international number, 10-14 digits
    st.tuples(st.sampled_from("23456789"), st.text(_d, min_size=6, max_size=12)).map(
        lambda p: f"+{p[0]}{p[1][:2]} {p[1][2:]}"
    ),
)
_around = st.text(max_size=30)


@given(before=_around, email=emails, after=_around)
def test_property_no_generated_address_survives_in_any_text(
    before: str, email: tuple[str, str], after: str
) -> None:
    local, domain = email
    address = f"{local}@{domain}"
    out = scrub(f"{before} {address} {after}")
    assert address not in out
    assert f"{local[0]}***@{domain}" in out


@given(before=_around, phone=phones, after=_around)
def test_property_no_generated_phone_survives_in_any_text(
    before: str, phone: str, after: str
) -> None:
    digits = re.sub(r"\D", "", phone)
    out = scrub(f"{before} {phone} {after}")
    assert phone not in out and digits not in out
    assert "***" in out  # digits that follow may join the mask (+1 415 555 0134 7 -> ***1347)


@given(
    st.text().filter(lambda t: "@" not in t and "%40" not in t and len(re.findall("[0-9]", t)) < 7)
)
def test_property_text_without_addresses_or_numbers_is_unchanged(text: str) -> None:
    assert scrub(text) == text


@given(st.text())
def test_property_scrub_is_idempotent(text: str) -> None:
    once = scrub(text)
    assert scrub(once) == once


# -- standard-library logging (Celery, kombu, warnings) ------------------------------------


@pytest.fixture
def stdlib_log() -> Iterator[io.StringIO]:
    """configure_logging onto a buffer; the root handler it adds is taken off afterwards."""
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_RedactingHandler"]:
        root.removeHandler(handler)
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_celery_retry_lines_and_tracebacks_are_scrubbed(stdlib_log: io.StringIO) -> None:
    trace = logging.getLogger("celery.app.trace")
    reason = "no employee jane.doe@acme.test (phone 415-555-0134)"
    trace.info("Task %s[%s] retry: Retry in %ss: %r", "deskgate.x", "id-1", 5, RuntimeError(reason))
    try:
        raise RuntimeError(reason)
    except RuntimeError:
        trace.exception("Task %s[%s] raised unexpected", "deskgate.x", "id-1")
    retry, failure = lines(stdlib_log)
    assert retry["logger"] == "celery.app.trace" and "Retry in 5s" in retry["event"]
    assert "j***@acme.test" in retry["event"] and "***0134" in retry["event"]
    assert "Traceback" in failure["exception"] and "j***@acme.test" in failure["exception"]
    text = stdlib_log.getvalue()
    assert "jane.doe" not in text and "555-0134" not in text


@pytest.mark.filterwarnings("always::UserWarning")  # the warning is this test's input
def test_library_warnings_are_scrubbed(stdlib_log: io.StringIO) -> None:
    warnings.warn("cannot reach sam.lee@acme.test", UserWarning, stacklevel=1)
    [line] = lines(stdlib_log)
    assert line["logger"] == "py.warnings" and "s***@acme.test" in line["event"]
    assert "sam.lee" not in stdlib_log.getvalue()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@redis.internal:6380/2?password=q", "redis://redis.internal:6380/2"),
        ("rediss://user:pw@[::1]:6379/0#frag", "rediss://[::1]:6379/0"),
        ("https://acme.zendesk.com", "https://acme.zendesk.com"),
        (
            "https://a:b@siem.acme.test/services/collector?token=x",
            "https://siem.acme.test/services/collector",
        ),
        ("redis://host:notaport/0", "(an unreadable URL)"),
    ],
)
def test_a_url_is_shown_from_its_parts_only(url: str, shown: str) -> None:
    assert display_url(url) == shown
    assert url_credentials("redis://u:pw@h/0?password=q&db=1") == ["pw", "u", "q"]


def test_deskgates_own_operational_values_stay_readable(stdlib_log: io.StringIO) -> None:
    """The worker logged ``d***@vm ready.`` and ``metrics served url=[redacted]``: an operator
    could read neither its node's name nor where its metrics are."""
    logging.getLogger("celery.apps.worker").info("%s ready.", "deskgate@vm")
    # The same words from anywhere else, or another template, are still masked.
    logging.getLogger("celery.other").info("%s ready.", "jane.doe@acme.test")
    logging.getLogger("celery.apps.worker").info("%s left.", "jane.doe@acme.test")
    structlog.get_logger("t").info(
        "metrics served",
        metrics_url="http://:pw@127.0.0.1:8100/metrics?token=t",
        url="https://verify.example/v/abc",
    )
    ready, other, left, served = lines(stdlib_log)
    assert ready["event"] == "deskgate@vm ready."
    assert other["event"] == "j***@acme.test ready." and left["event"] == "j***@acme.test left."
    assert served["metrics_url"] == "http://127.0.0.1:8100/metrics"
    assert served["url"] == "[redacted]"
