"""Zendesk's search language (``GET /api/v2/search?query=``), the subset the simulator serves.

``keyword:value`` terms (``type status tags tag requester assignee subject description created
updated``), the range operators ``< > <= >=`` on status and dates (absolute or relative, as
``updated>2hours``), ``-`` to negate, ``order_by:``/``sort:``, and plain words. Unknown keywords are
ignored rather than failing the search. Matching a ticket needs the simulator's records, so it
stays with them (``ZendeskState.search``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


def parse_instant(value: str) -> datetime | None:
    """An ISO 8601 instant in UTC (``Z`` or an offset; naive means UTC), None if unreadable."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


_TERM = re.compile(r"^(-?)([a-z_]+)(<=|>=|:|<|>)(.+)$", re.IGNORECASE)
_RELATIVE = re.compile(r"^(\d+)(minute|hour|day|week)s?$", re.IGNORECASE)
_SEARCH_KEYWORDS = {
    "type",
    "status",
    "tags",
    "tag",
    "requester",
    "assignee",
    "subject",
    "description",
    "created",
    "updated",
}


@dataclass
class SearchQuery:
    """A parsed subset of Zendesk's search language.

    Repeated ``keyword:value`` terms of one keyword are OR'ed (as Zendesk does), ranges and
    different keywords AND'ed, ``-`` negates; plain words must appear in subject/description.
    """

    types: set[str] = field(default_factory=set)
    equal: dict[str, list[str]] = field(default_factory=dict)
    ranges: list[tuple[str, str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    excluded_words: list[str] = field(default_factory=list)
    order_by: str | None = None
    sort: str | None = None

    @classmethod
    def parse(cls, text: str) -> SearchQuery:
        try:
            tokens = shlex.split(text)
        except ValueError:  # unbalanced quote: fall back to plain whitespace split
            tokens = text.split()
        query = cls()
        for token in tokens:
            match = _TERM.match(token)
            if match is None:
                word = token.lower()
                if word.startswith("-") and len(word) > 1:
                    query.excluded_words.append(word[1:])
                elif word and word != "-":
                    query.words.append(word)
                continue
            negated, keyword, op, value = match.groups()
            keyword, value = keyword.lower(), value.strip('"').lower()
            keyword = "tags" if keyword == "tag" else keyword
            if keyword == "order_by" and op == ":":
                query.order_by = value
            elif keyword == "sort" and op == ":":
                query.sort = value
            elif keyword == "type" and op == ":" and not negated:
                query.types.add(value)
            elif keyword not in _SEARCH_KEYWORDS:
                continue  # unknown keywords are ignored rather than failing the search
            elif negated:
                query.excluded.append((keyword, value))
            elif op == ":":
                query.equal.setdefault(keyword, []).append(value)
            else:
                query.ranges.append((keyword, op, value))
        return query


def date_bound(value: str, now: datetime) -> datetime | None:
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2).lower()
        return now - timedelta(**{f"{unit}s": amount})
    return parse_instant(value)


def compare(left: float, op: str, right: float) -> bool:
    if op == "<":
        return left < right
    if op == ">":
        return left > right
    if op == "<=":
        return left <= right
    if op == ">=":
        return left >= right
    return left == right
