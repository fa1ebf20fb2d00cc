"""Responses are classified once; Retry-After is read in both of its forms."""

from __future__ import annotations

import httpx
import pytest
from freezegun import freeze_time

from connectors.http import (
    MAX_RETRY_AFTER,
    AuthFailed,
    Conflict,
    Fatal,
    NotFound,
    RateLimited,
    Retriable,
    classify,
    parse_retry_after,
)


def describe(response: httpx.Response) -> str:
    return str(response.json().get("error", ""))


def response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": f"E{status}"}, headers=headers)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, Retriable),
        (502, Retriable),
        (503, Retriable),
        (401, AuthFailed),
        (403, AuthFailed),
        (404, NotFound),
        (409, Conflict),
        (400, Fatal),
        (422, Fatal),
    ],
)
def test_classification(status: int, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        classify("zendesk", response(status), describe)
    assert type(raised.value) is error
    assert f"E{status}" in str(raised.value)


def test_429_carries_the_wait_and_is_retriable() -> None:
    with pytest.raises(RateLimited) as raised:
        classify("zendesk", response(429, {"Retry-After": "17"}), describe)
    assert raised.value.retry_after == 17
    assert isinstance(raised.value, Retriable)


def test_503_with_retry_after_is_a_rate_limit() -> None:
    with pytest.raises(RateLimited):
        classify("servicenow", response(503, {"Retry-After": "5"}), describe)


def test_2xx_passes() -> None:
    classify("incode", httpx.Response(204), describe)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_success(status: int) -> None:
    """Redirects are not followed, so nothing was done: a write a desk answered with a redirect
    must not read as written, and the error names the base URL as the thing to fix."""
    moved = httpx.Response(status, headers={"Location": "https://other.example/api"})
    with pytest.raises(Fatal, match=r"redirect to https://other\.example/api: check its base URL"):
        classify("zendesk", moved, describe)


@freeze_time("2026-11-26 12:00:00")
def test_retry_after_as_http_date_and_capped() -> None:
    assert parse_retry_after("Thu, 26 Nov 2026 12:00:30 GMT") == 30
    assert parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT") == 0
    assert parse_retry_after("86400") == MAX_RETRY_AFTER
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("status", [400, 500])
def test_a_vendor_reason_carries_no_address_or_number(status: int) -> None:
    """Vendors echo what they were sent; the reason reaches logs, retries and ticket notes."""
    body = {"error": "no identity for jane.doe@acme.test or 415-555-0134"}
    with pytest.raises((Fatal, Retriable)) as raised:
        classify("incode", httpx.Response(status, json=body), describe)
    assert raised.value.reason == "no identity for j***@acme.test or ***0134"
    assert "jane.doe" not in str(raised.value) and "555-0134" not in str(raised.value)
