"""ServiceNow encoded queries (``sysparm_query``): parsing, matching and ordering.

Grammar emulated (as the platform reads it):

- ``^`` joins conditions with AND; ``^OR`` joins a condition to the one before it with OR, and OR
  binds tighter than AND: ``a=1^ORa=2^b=3`` is ``(a=1 OR a=2) AND b=3``.
- ``^NQ`` starts a new query; the record matches if *any* of the queries matches. This is the only
  way to write ``A OR (B AND C)``, which is what keyset paging needs.
- ``ORDERBY<field>`` / ``ORDERBYDESC<field>`` anywhere, several allowed; ``EQ`` is a no-op.
- Operators: ``= != > >= < <= LIKE NOTLIKE STARTSWITH ENDSWITH IN NOT IN ISEMPTY ISNOTEMPTY``.

Parts the platform would not understand are dropped silently, as ServiceNow does by default
(``glide.invalid_query.returns_no_rows=false``); the caller prunes conditions on unknown fields.
String comparisons are case-insensitive like the instance database collation; two numeric operands
compare as numbers; ``yyyy-MM-dd HH:mm:ss`` date-times compare correctly as strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

# Record -> field path -> value ("" when unset or the reference does not resolve).
Resolver = Callable[[Mapping[str, str], str], str]

# Columns are lowercase, operators uppercase or symbols, so a greedy field match is unambiguous.
_CONDITION = re.compile(
    r"^(?P<field>[a-z0-9_.]+)"
    r"(?P<op>ISNOTEMPTY|ISEMPTY|STARTSWITH|ENDSWITH|NOTLIKE|LIKE|NOT IN|IN|!=|>=|<=|>|<|=)"
    r"(?P<value>.*)$",
    re.DOTALL,
)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# The glide helper integrations commonly send instead of a literal date-time.
_DATE_GENERATE = re.compile(r"^javascript:\s*gs\.dateGenerate\(\s*'([^']*)'\s*,\s*'([^']*)'\s*\)$")
_ESCAPED_CARET = "\x00"


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str


@dataclass(frozen=True)
class Ordering:
    field: str
    descending: bool = False


# One NQ block: AND of groups; each group is an OR of conditions.
Block = tuple[tuple[Condition, ...], ...]


@dataclass(frozen=True)
class EncodedQuery:
    blocks: tuple[Block, ...] = ()
    orderings: tuple[Ordering, ...] = ()

    def prune(self, is_valid: Callable[[str], bool]) -> EncodedQuery:
        """Drop conditions and orderings on invalid fields, as the platform silently does."""
        blocks: list[Block] = []
        for block in self.blocks:
            groups = tuple(
                kept for group in block if (kept := tuple(c for c in group if is_valid(c.field)))
            )
            # A block whose every condition was invalid matches everything, like an empty query.
            blocks.append(groups)
        orderings = tuple(o for o in self.orderings if is_valid(o.field))
        return EncodedQuery(tuple(blocks), orderings)

    def matches(self, record: Mapping[str, str], resolve: Resolver) -> bool:
        if not self.blocks:
            return True
        return any(
            all(any(_test(c, resolve(record, c.field)) for c in group) for group in block)
            for block in self.blocks
        )


def parse(query: str) -> EncodedQuery:
    """Parse an encoded query; unparseable parts are ignored rather than rejected."""
    blocks: list[Block] = []
    groups: list[list[Condition]] = []
    orderings: list[Ordering] = []
    attempted = False  # a block of only ignored conditions still exists, and matches everything
    # "^^" is how a literal caret is written inside a value.
    for raw in query.replace("^^", _ESCAPED_CARET).split("^"):
        token = raw.replace(_ESCAPED_CARET, "^")
        if not token.strip() or token == "EQ":
            continue
        if token.startswith("NQ"):  # "a^NQb": the new query's first condition follows NQ
            if attempted:
                blocks.append(tuple(tuple(g) for g in groups))
            groups, attempted = [], False
            token = token.removeprefix("NQ")
            if not token:
                continue
        if token.startswith("ORDERBYDESC"):
            orderings.append(Ordering(token.removeprefix("ORDERBYDESC"), descending=True))
            continue
        if token.startswith("ORDERBY"):
            orderings.append(Ordering(token.removeprefix("ORDERBY")))
            continue
        attempted = True
        is_or = token.startswith("OR")
        condition = _parse_condition(token[2:] if is_or else token)
        if condition is None:
            continue
        if is_or and groups:
            groups[-1].append(condition)
        else:
            groups.append([condition])
    if attempted:
        blocks.append(tuple(tuple(g) for g in groups))
    return EncodedQuery(tuple(blocks), tuple(o for o in orderings if o.field))


def _parse_condition(token: str) -> Condition | None:
    match = _CONDITION.match(token)
    if match is None:
        return None
    value = match["value"]
    if date := _DATE_GENERATE.match(value):
        value = f"{date[1]} {date[2]}"
    return Condition(match["field"], match["op"], value)


def _test(condition: Condition, actual: str) -> bool:
    op, expected = condition.op, condition.value
    left, right = actual.casefold(), expected.casefold()
    if op == "ISEMPTY":
        return actual == ""
    if op == "ISNOTEMPTY":
        return actual != ""
    if op == "LIKE":
        return right in left
    if op == "NOTLIKE":
        return right not in left
    if op == "STARTSWITH":
        return left.startswith(right)
    if op == "ENDSWITH":
        return left.endswith(right)
    if op in ("IN", "NOT IN"):
        found = left in {v.strip().casefold() for v in expected.split(",")}
        return found if op == "IN" else not found
    order = _compare(actual, expected)
    return {
        "=": order == 0,
        "!=": order != 0,
        ">": order > 0,
        ">=": order >= 0,
        "<": order < 0,
        "<=": order <= 0,
    }[op]


def _compare(a: str, b: str) -> int:
    """-1/0/1; numerically when both sides are numbers, else case-insensitively as strings."""
    if _NUMBER.match(a) and _NUMBER.match(b):
        x: float | str = float(a)
        y: float | str = float(b)
    else:
        x, y = a.casefold(), b.casefold()
    return (x > y) - (x < y)  # type: ignore[operator]


def sort_records(
    records: Iterable[Mapping[str, str]], orderings: Sequence[Ordering], resolve: Resolver
) -> list[Mapping[str, str]]:
    """Stable multi-key sort; input order (creation order) breaks ties.

    A column sorts numerically when every non-empty value in it is a number (the simulator has no
    column types); empty values sort first ascending, last descending, like NULLs in the database.
    """
    rows = list(records)
    for ordering in reversed(orderings):
        values = [resolve(r, ordering.field) for r in rows]
        numeric = all(_NUMBER.match(v) for v in values if v)
        keyed = sorted(
            zip(values, range(len(rows)), strict=True),
            key=lambda item: _sort_key(item[0], numeric),
            reverse=ordering.descending,  # still stable: ties keep creation order
        )
        rows = [rows[i] for _, i in keyed]
    return rows


def _sort_key(value: str, numeric: bool) -> tuple[int, float, str]:
    if value == "":
        return (0, 0.0, "")
    if numeric:
        return (1, float(value), "")
    return (1, 0.0, value.casefold())
