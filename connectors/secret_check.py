"""Comparing what a caller presents with the secrets we hold: in constant time, every candidate
checked (so timing does not tell which one matched), and never with an empty value on either
side. Settings refuse empty and short secrets at start-up; this is the second line, so a secret
that reaches a check empty (a blank environment variable, a test) authenticates nobody."""

from __future__ import annotations

import hmac
from collections.abc import Iterable


def usable(secrets: Iterable[str]) -> list[str]:
    """The secrets that may authenticate anything. Filter before deriving (an HMAC with an
    empty key is a perfectly valid signature anyone can compute)."""
    return [s for s in secrets if s]


def matches_any(presented: str, expected: Iterable[str]) -> bool:
    """``presented`` equals one of the non-empty ``expected`` values. Bytes, because
    ``compare_digest`` raises on non-ASCII ``str`` and the presented value is anyone's."""
    given = presented.encode()
    found = [hmac.compare_digest(given, e.encode()) for e in usable(expected)]
    return bool(presented) and any(found)
