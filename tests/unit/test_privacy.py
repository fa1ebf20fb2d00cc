from __future__ import annotations

import io
import json

import structlog

from config.logging import configure_logging
from config.privacy import mask_destination, mask_email, mask_phone, scrub


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
