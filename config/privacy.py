"""Masking of personal data, for logs and for what Deskgate writes in tickets.

Agents see enough to recognise a destination (``j***@acme.com``, ``***1234``); logs never see
more than that.
"""

from __future__ import annotations

import re

# The local part is anything an address may hold up to the "@" (RFC 6531 allows any Unicode
# letter, and combining marks must not split it), so no part of it survives; "*" is left out so
# a masked address is not masked again. The domain is a host name (``localhost`` too, Unicode
# labels) or an address literal (``[127.0.0.1]``), and stays readable.
_LOCAL = r"""[^\s@<>()\[\]\\,;:"*]"""
EMAIL = re.compile(rf"({_LOCAL}){_LOCAL}*@((?:[^\W_][\w-]*\.)*[^\W_][\w-]*|\[[\w.:]+\])")
# Phone numbers: international with "+", the North American (415) 555-0134 / 415-555-0134 /
# 415.555.0134 / 415 555 0134 forms, and bare runs of 10 to 15 digits (4155550134, 14155550134)
# that stand alone: not inside an id with letters or hex (Incode's 24-character interview ids, a
# UUID's last group), not a decimal fraction, and not epoch seconds or milliseconds (10 or 13
# digits beginning with 1). No phone number has that last shape: North American area codes never
# begin with 0 or 1, and every other country code begins with 2 to 9. Shorter runs (ticket ids,
# years) are left alone.
PHONE = re.compile(
    r"\+[0-9][0-9 ().-]{5,}[0-9]"
    r"|(?<![\w.])(?:\([0-9]{3}\)\s?|[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}(?!\w)"
    r"|(?<![\w.])(?<![0-9A-Fa-f]{4}-)(?!1[0-9]{9}(?![0-9])|1[0-9]{12}(?![0-9]))[0-9]{10,15}(?!\w)"
)


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


def scrub(text: str) -> str:
    """Mask every email address and phone-like number in free text."""
    text = EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return PHONE.sub(lambda m: mask_phone(m.group(0)), text)
