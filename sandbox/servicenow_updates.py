"""How the ServiceNow simulator previews and commits a retrieved update set: one handler per
record type, as the platform's update handlers do (ServiceNow's documentation of update sets:
"Update set preview", "Commit an update set" and the special handling of dictionary, field
label and choice list updates).

- **Dictionary** (``<sys_dictionary element= table=>``): the column is found by table and
  element, never by sys_id (two instances give the same column different sys_ids). Without
  both attributes the handler cannot tell which column it is: a preview problem. A table the
  instance does not have is a preview problem too.
- **Field label** (``<sys_documentation element= label= language= table=>``): sets the
  column's label in that language, found by table, element and language.
- **Choice list** (``<sys_choice field= table=>`` holding the ``sys_choice_set`` and every
  ``sys_choice``): replaces the field's choices with the set's; choices the set lacks go.
- **Access control** (``sys_security_acl`` with its ``sys_security_acl_role`` rows): the ACL by
  sys_id, each role row by sys_id; a role row's ``sys_user_role`` is a sys_id, and when no role
  has it, the role named by its ``name`` attribute (how an export references a stock role). A
  role found neither way is a preview problem ("Could not find a record in sys_user_role").
- **Everything else** (role, property, business rule, UI action): the record by sys_id.

Strict where the documentation is thin: a record type without a handler here, a payload that
names no record and an element the table does not know are preview problems, and nothing of a
set with a problem is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from xml.etree import ElementTree as ET

from connectors.servicenow.update_set import Update

Record = dict[str, str]
# Record types committed as plain records, by sys_id.
PLAIN = ("sys_user_role", "sys_properties", "sys_script", "sys_ui_action")


class Instance(Protocol):
    """What the handlers need of ``ServiceNowState``."""

    tables: dict[str, dict[str, Record]]

    def insert(self, table: str, values: Mapping[str, Any], user: str) -> tuple[Record, Any]: ...

    def update(
        self, table: str, sys_id: str, values: Mapping[str, Any], user: str
    ) -> tuple[Record, Any]: ...


@dataclass(frozen=True)
class Write:
    """One record a committed update writes: ``match`` finds an existing one to update."""

    table: str
    values: Record
    match: Callable[[Record], bool]
    create: bool = True  # False: only updates a record that exists


def _fields(body: ET.Element) -> Record:
    return {child.tag: child.text or "" for child in body if len(child) == 0}


def _by_id(table: str, values: Record) -> Write:
    sys_id = values.get("sys_id", "")
    return Write(table, values, lambda r: r.get("sys_id") == sys_id)


class _Plan:
    """What one update would write, or the problems that stop it."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.problems: list[str] = []
        self.writes: list[Write] = []
        self.removals: list[tuple[str, Callable[[Record], bool]]] = []

    def problem(self, update: Update, text: str) -> None:
        self.problems.append(f"{update.name or '(unnamed update)'}: {text}")

    def table_exists(self, update: Update, table: str) -> bool:
        if table not in self.instance.tables:
            self.problem(update, f"no table {table!r} on this instance")
            return False
        return True

    def add(self, update: Update) -> None:
        bodies = list(update.payload)
        if not bodies:
            self.problem(update, "the payload holds no record")
            return
        tag = bodies[0].tag
        handler = {
            "sys_dictionary": self.dictionary,
            "sys_documentation": self.documentation,
            "sys_choice": self.choices,
            "sys_security_acl": self.acl,
        }.get(tag)
        if handler is not None:
            handler(update, bodies)
        elif tag in PLAIN:
            for body in bodies:
                self.writes.append(_by_id(tag, _fields(body)))
        else:
            self.problem(update, f"no update handler for {tag!r} records")

    def dictionary(self, update: Update, bodies: list[ET.Element]) -> None:
        body = bodies[0]
        table, element = body.get("table"), body.get("element")
        if not table or not element:
            self.problem(
                update,
                "a dictionary update without its element and table attributes: the handler "
                "cannot tell which column it is",
            )
            return
        if not self.table_exists(update, table):
            return
        # Coalesces on table and element, never on sys_id (which only a new column takes).
        values = {**_fields(body), "name": table, "element": element}
        self.writes.append(
            Write("sys_dictionary", values,
                  lambda r: (r.get("name"), r.get("element")) == (table, element))
        )  # fmt: skip

    def documentation(self, update: Update, bodies: list[ET.Element]) -> None:
        body = bodies[0]
        table, element = body.get("table"), body.get("element")
        label, language = body.get("label"), body.get("language")
        if not (table and element and label and language):
            self.problem(update, "a field label update without table, element, label, language")
            return
        key = {"name": table, "element": element, "language": language}
        self.writes.append(
            Write("sys_documentation", {**key, "label": label},
                  lambda r: all(r.get(k) == v for k, v in key.items()))
        )  # fmt: skip
        # The column shows the label of its documentation (sys_dictionary.column_label).
        self.writes.append(
            Write("sys_dictionary", {"column_label": label},
                  lambda r: (r.get("name"), r.get("element")) == (table, element), create=False)
        )  # fmt: skip

    def choices(self, update: Update, bodies: list[ET.Element]) -> None:
        wrapper = bodies[0]
        table, element = wrapper.get("table"), wrapper.get("field")
        if not table or not element:
            self.problem(update, "a choice list update without its field and table attributes")
            return
        if not self.table_exists(update, table):
            return
        sets = [_fields(b) for b in wrapper if b.tag == "sys_choice_set"]
        if len(sets) != 1:
            self.problem(update, "a choice list update must hold exactly one sys_choice_set")
            return

        def field_of(record: Record) -> bool:
            return (record.get("name"), record.get("element")) == (table, element)

        self.removals.append(("sys_choice", field_of))
        self.writes.append(Write("sys_choice_set", {**sets[0], "name": table,
                                                    "element": element}, field_of))  # fmt: skip
        for body in wrapper:
            if body.tag == "sys_choice":
                self.writes.append(
                    _by_id("sys_choice", {**_fields(body), "name": table, "element": element})
                )

    def acl(self, update: Update, bodies: list[ET.Element]) -> None:
        for body in bodies:
            if body.tag == "sys_security_acl":
                self.writes.append(_by_id("sys_security_acl", _fields(body)))
            elif body.tag == "sys_security_acl_role":
                values = _fields(body)
                ref = body.find("sys_user_role")
                role = self.role_id(ref)
                if role is None:
                    name = ref.get("name", "") if ref is not None else ""
                    self.problem(
                        update,
                        f"Could not find a record in sys_user_role for column sys_user_role "
                        f"referenced in this update (name {name!r})",
                    )
                    continue
                self.writes.append(
                    _by_id("sys_security_acl_role", {**values, "sys_user_role": role})
                )
            else:
                self.problem(update, f"an access control update holding {body.tag!r}")

    def role_id(self, ref: ET.Element | None) -> str | None:
        if ref is None:
            return None
        roles = self.instance.tables["sys_user_role"]
        made = {w.values.get("sys_id") for w in self.writes if w.table == "sys_user_role"}
        sys_id = (ref.text or "").strip()
        if sys_id and (sys_id in roles or sys_id in made):
            return sys_id
        name = ref.get("name", "")
        return next((r["sys_id"] for r in roles.values() if name and r.get("name") == name), None)


def plan(instance: Instance, updates: list[Update]) -> _Plan:
    planned = _Plan(instance)
    for update in updates:
        planned.add(update)
    return planned


def problems(instance: Instance, updates: list[Update]) -> list[str]:
    """What Preview reports: nothing of a set with problems can be committed."""
    return plan(instance, updates).problems


def commit(instance: Instance, updates: list[Update], user: str) -> int:
    """Apply every update, in the file's order; the number of updates applied."""
    planned = plan(instance, updates)
    if planned.problems:
        raise ValueError("; ".join(planned.problems))
    for table, match in planned.removals:
        for sys_id in [k for k, r in instance.tables[table].items() if match(r)]:
            del instance.tables[table][sys_id]
    for write in planned.writes:
        rows = instance.tables[write.table]
        found = next((sys_id for sys_id, r in rows.items() if write.match(r)), None)
        if found is not None:
            instance.update(write.table, found, write.values, user)
        elif write.create:
            instance.insert(write.table, write.values, user)
    return len(updates)
