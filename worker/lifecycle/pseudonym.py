"""Keyed hashes of personal data, for Redis keys and audit events.

The same input gives the same hash under the same secret, so a person can be counted and grouped
(link caps, the first-seen ledger, a SIEM's grouping of cap hits) without an address or employee
number being stored or sent. A plain SHA-256 would not do: a phone number or an employee number
is found again by hashing every candidate. The key is derived from ``note_secret`` with a
purpose, so one purpose's hashes say nothing about another's; rotating ``note_secret`` changes
every hash (what each user does about that is said where it is used).
"""

from __future__ import annotations

import hashlib
import hmac


class Pseudonyms:
    def __init__(self, secrets: list[str], purpose: str) -> None:
        if not secrets or not all(secrets):
            raise ValueError("pseudonyms need a non-empty secret")
        self._keys = [
            hmac.new(s.encode(), f"deskgate pseudonym: {purpose}".encode(), hashlib.sha256).digest()
            for s in secrets
        ]

    def of(self, *parts: str) -> str:
        """The hash under the current secret (32 hex characters: 128 bits)."""
        return self._hash(self._keys[0], parts)

    def previous(self, *parts: str) -> list[str]:
        """The hashes under the previous secrets, to find what was stored before a rotation."""
        return [self._hash(key, parts) for key in self._keys[1:]]

    @staticmethod
    def _hash(key: bytes, parts: tuple[str, ...]) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
