"""Masking of personal data, for logs and for what Deskgate writes in tickets.

Agents see enough to recognise a destination (``j***@acme.com``, ``***1234``); logs never see
more than that.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

# The local part is anything an address may hold up to the "@" (RFC 6531 allows any Unicode
# letter, and combining marks must not split it), so no part of it survives; "*" is left out so
# a masked address is not masked again. The domain is a host name (``localhost`` too, Unicode
# labels) or an address literal (``[127.0.0.1]``), and stays readable.
_LOCAL = r"""[^\s@<>()\[\]\\,;:"*]"""
# "@" may come URL-encoded ("jane%40acme.com" in a logged query string); either way the masked
# address is written with "@".
EMAIL = re.compile(rf"({_LOCAL}){_LOCAL}*?(?:@|%40)((?:[^\W_][\w-]*\.)*[^\W_][\w-]*|\[[\w.:]+\])")
# Phone numbers: international with "+" (or its URL encoding "%2B"); the North American (415)
# 555-0134 / 415-555-0134 / 415.555.0134 / 415 555 0134 forms, an extension may follow; national
# forms with a leading 0 in groups ("020 7946 0958", "07700 900123", "0044 20 7946 0958", 9 to
# 15 digits in all); and bare runs of 10 to 15 digits (4155550134, 14155550134) that stand alone:
# not inside a hexadecimal id (Incode's 24-character interview ids, a UUID's last group, a
# ServiceNow sys_id), not a decimal fraction, and not epoch seconds or milliseconds (10 or 13
# digits beginning with 1). No phone number has that last shape: North American area codes
# never begin with 0 or 1, and every other country code begins with 2 to 9. Shorter runs (ticket
# ids, years, dates) are left alone.
PHONE = re.compile(
    r"(?:\+|%2[Bb])[0-9][0-9 ().-]{5,}[0-9]"
    r"|(?<![0-9.])(?:\([0-9]{3}\)\s?|[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}(?![0-9])"
    r"|(?<![0-9A-Fa-f.])(?<![0-9A-Fa-f]{4}-)(?!1[0-9]{9}(?![0-9])|1[0-9]{12}(?![0-9]))"
    r"[0-9]{10,15}(?![0-9A-Fa-f])"
)
# National forms with a leading 0, in a pass of their own (a too-short candidate must not hide a
# number that starts inside it).
NATIONAL = re.compile(r"(?<![\w.+*])0[0-9]{1,4}(?:[ -][0-9]{2,6}){1,3}(?![0-9])")
_NATIONAL_DIGITS = range(9, 16)


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    if not domain:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return f"***{digits[-4:]}" if len(digits) >= 4 else "***"


def mask_destination(channel: str, value: str) -> str:
    return mask_email(value) if channel == "EMAIL" else mask_phone(value)


# Every phone form above has at least 7 digits: text with fewer needs no phone pass (most log
# values: event names, desk names, short ids).
_SEVEN_DIGITS = re.compile(r"(?:[^0-9]*[0-9]){7}")


def scrub(text: str) -> str:
    """Mask every email address and phone-like number in free text."""
    if "@" in text or "%40" in text:
        text = EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    if _SEVEN_DIGITS.match(text) is None:
        return text
    text = PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return NATIONAL.sub(_mask_national, text)


def _mask_national(match: re.Match[str]) -> str:
    found = match.group(0)
    if len(re.sub(r"\D", "", found)) not in _NATIONAL_DIGITS:
        return found  # a short group of digits with a leading 0: a code, a date, a version
    return mask_phone(found)


# Query parameters a client library reads credentials from (redis-py takes ``?password=``).
_CREDENTIAL_PARAMS = ("password", "username", "user", "token", "secret", "key")


def display_url(url: str) -> str:
    """A URL as it may be printed or logged: rebuilt from its scheme, host, port and path (a
    Redis URL's database), so neither its user-info nor its query (``?password=``) nor its
    fragment can show. The one way Deskgate shows a URL it was configured with."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "(an unreadable URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    return f"{parts.scheme}://{host}{port}{parts.path}"


def url_credentials(url: str) -> list[str]:
    """The secrets a URL carries (its password, credential query parameters): what must be cut
    from any text a client library wrote about it."""
    try:
        parts = urlsplit(url)
        found = [parts.password or "", parts.username or ""]
    except ValueError:
        return []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _CREDENTIAL_PARAMS]
    return [value for value in found if value]
