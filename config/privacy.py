"""Masking of personal data, for logs and for what Deskgate writes in tickets.

Agents see enough to recognise a destination (``j***@acme.com``, ``***1234``); logs never see
more than that.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# International numbers and the (555) 123-4567 form; plain digit runs are left alone, since ids
# and timestamps look the same.
PHONE = re.compile(r"\+\d[\d ().-]{5,}\d|\(\d{3}\)\s?\d{3}-\d{4}")


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
