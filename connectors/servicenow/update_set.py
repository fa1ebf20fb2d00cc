"""The desk's records as an update set XML, for System Update Sets > Retrieved Update Sets >
Import Update Set from XML, then Preview and Commit.

The file has the shape of the platform's own export: an ``<unload unload_date="...">`` holding
one ``sys_remote_update_set`` and one ``sys_update_xml`` per update, whose ``payload`` is the
update's XML escaped as text. Some record types travel through the platform's update handlers
rather than as plain records, and are named by what they coalesce on, never by sys_id:

- a field is ``sys_dictionary_<table>_<element>``, a payload ``<record_update><sys_dictionary
  action="INSERT_OR_UPDATE" element="..." table="...">`` (the handler finds the column by table
  and element), and its label a separate ``sys_documentation_<table>_<element>_en`` update;
- a field's choices are one ``sys_choice_<table>_<element>`` update holding the whole choice set
  (``sys_choice_set`` and every ``sys_choice``); committing it replaces the field's choices;
- an ACL travels with its roles (``sys_security_acl_role``) in one update; a role is referenced
  by its sys_id and, for an instance where that sys_id differs (a stock role such as ``itil``),
  by its ``name`` attribute.

Other records (role, property, business rule, UI action) are ``<table>_<sys_id>``. Every update
is in the global application and domain; a property's has an empty ``table``.

The secret property is not in it: a file is reviewed, mailed and committed to repositories, and
an update set promoted or imported again later must not overwrite the secret an instance already
has (an empty value would stop every push). Nor is the integration user's role: update sets
never carry users' data. Both are set once, by hand or with ``--apply``. Every sys_id derives
from the desk (``records.sys_id_for``) and the ``unload_date`` is given, so the same desk and
date always give the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from xml.etree import ElementTree as ET

from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.records import Wanted, sys_id_for, sys_id_for_name, wanted

UNLOAD_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# What the platform calls each update in an update set's "Type" column.
TYPES = {
    "sys_dictionary": "Dictionary",
    "sys_documentation": "Field Label",
    "sys_choice": "Choice list",
    "sys_user_role": "Role",
    "sys_security_acl": "Access Control",
    "sys_properties": "System Property",
    "sys_script": "Business Rule",
    "sys_ui_action": "UI Action",
}
_UNLOAD_DATE = re.compile(rb'<unload unload_date="([0-9: -]{19})"')


@dataclass(frozen=True)
class Update:
    """One ``sys_update_xml`` of a file: its name, type, table and parsed payload."""

    name: str
    type: str
    table: str
    payload: ET.Element  # <record_update>


def set_name(desk: str) -> str:
    return f"Deskgate ({desk})"


def now() -> str:
    return datetime.now(UTC).strftime(UNLOAD_DATE_FORMAT)


def unload_date(data: bytes) -> str | None:
    """The ``unload_date`` of an update set file, if it has one."""
    found = _UNLOAD_DATE.search(data[:500])
    return found.group(1).decode() if found else None


def _element(parent: ET.Element, tag: str, values: dict[str, str], **attrs: str) -> ET.Element:
    body = ET.SubElement(parent, tag, {"action": "INSERT_OR_UPDATE", **attrs})
    for name, value in sorted(values.items()):
        ET.SubElement(body, name).text = value
    return body


def _with_id(record: Wanted) -> dict[str, str]:
    return {**record.values, "sys_id": record.sys_id}


def _acl_role(parent: ET.Element, record: Wanted, made: set[str]) -> None:
    role = record.values["sys_user_role"]
    body = ET.SubElement(parent, "sys_security_acl_role", action="INSERT_OR_UPDATE")
    ET.SubElement(body, "sys_id").text = record.sys_id
    ET.SubElement(body, "sys_security_acl").text = record.values["sys_security_acl"]
    # A role setup makes has the sys_id setup gives it; a stock one is found by its name.
    ref = ET.SubElement(body, "sys_user_role", display_value=role, name=role)
    ref.text = sys_id_for_name("sys_user_role", "name", role) if role in made else ""


def _updates(records: list[Wanted]) -> Iterator[tuple[str, str, str, str, ET.Element]]:
    """(name, type, table, target name, <record_update>) for each update, in order."""
    made = {r.values["name"] for r in records if r.table == "sys_user_role"}
    roles_of: dict[str, list[Wanted]] = {}
    for record in records:
        if record.table == "sys_security_acl_role":
            roles_of.setdefault(record.values["sys_security_acl"], []).append(record)
    for (table, _), group in groupby(records, key=lambda r: (r.table, r.table == "sys_choice")):
        batch = list(group)
        if table == "sys_choice":
            for (name, element), choices in groupby(
                batch, key=lambda r: (r.values["name"], r.values["element"])
            ):
                root = ET.Element("record_update", table="sys_choice")
                wrapper = ET.SubElement(
                    root, "sys_choice", action="INSERT_OR_UPDATE", field=element, table=name
                )
                choice_set = {"name": name, "element": element,
                              "sys_id": sys_id_for("sys_choice_set", name, element)}  # fmt: skip
                _element(wrapper, "sys_choice_set", choice_set)
                for choice in choices:
                    _element(wrapper, "sys_choice", _with_id(choice))
                yield f"sys_choice_{name}_{element}", TYPES[table], name, f"{name}.{element}", root
            continue
        for record in batch:
            values = record.values
            if table == "sys_dictionary":
                name, element = values["name"], values["element"]
                root = ET.Element("record_update")
                _element(root, table, _with_id(record), element=element, table=name)
                yield f"sys_dictionary_{name}_{element}", TYPES[table], name, record.name, root
                label = values["column_label"]
                doc = ET.Element("record_update")
                _element(
                    doc, "sys_documentation",
                    {"name": name, "element": element, "label": label, "language": "en",
                     "sys_id": sys_id_for("sys_documentation", name, element, "en")},
                    element=element, label=label, language="en", table=name,
                )  # fmt: skip
                yield (f"sys_documentation_{name}_{element}_en", TYPES["sys_documentation"],
                       name, label, doc)  # fmt: skip
            elif table == "sys_security_acl":
                root = ET.Element("record_update", table=table)
                _element(root, table, _with_id(record))
                for role in roles_of.get(record.sys_id, []):
                    _acl_role(root, role, made)
                yield (f"{table}_{record.sys_id}", TYPES[table], values["name"].split(".")[0],
                       values["name"], root)  # fmt: skip
            elif table in TYPES:
                root = ET.Element("record_update", table=table)
                _element(root, table, _with_id(record))
                target = values.get("collection") or values.get("table") or ""
                if table in ("sys_properties", "sys_user_role"):
                    target = ""  # an instance-wide record belongs to no table
                yield f"{table}_{record.sys_id}", TYPES[table], target, record.name, root


def render(
    desk: str, config: ServiceNowDeskConfig, public_url: str, unloaded: str | None = None
) -> bytes:
    """The update set for ``desk``, stamped ``unloaded`` (now if None); never the secret, nor
    its property, nor a user's role (see above)."""
    records = [r for r in wanted(desk, config, public_url) if r.in_update_set and not r.secret]
    set_id = sys_id_for("sys_remote_update_set", desk, config.table)
    unload = ET.Element("unload", unload_date=unloaded or now())
    remote = ET.SubElement(unload, "sys_remote_update_set", action="INSERT_OR_UPDATE")
    for name, value in (
        ("application", "global"),
        ("description", f"Deskgate identity verification on {config.table}: role, fields, "
                        "choices, ACLs, properties, business rule and UI action. Made by "
                        "`deskgate setup`; committing it needs the security_admin role "
                        "elevated (it holds ACLs)."),
        ("name", set_name(desk)),
        ("state", "loaded"),
        ("sys_id", set_id),
    ):  # fmt: skip
        ET.SubElement(remote, name).text = value
    for name, kind, table, target, payload in _updates(records):
        update = ET.SubElement(unload, "sys_update_xml", action="INSERT_OR_UPDATE")
        text = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(payload, encoding="unicode")
        for field, value in (
            ("action", "INSERT_OR_UPDATE"),
            ("application", "global"),
            ("category", "customer"),
            ("name", name),
            ("payload", text),
            ("remote_update_set", set_id),
            ("replace_on_upgrade", "false"),
            ("sys_id", sys_id_for("sys_update_xml", set_id, name)),
            ("table", table),
            ("target_name", target),
            ("type", kind),
            ("update_domain", "global"),
        ):
            ET.SubElement(update, field).text = value
    ET.indent(unload)
    text = ET.tostring(unload, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode()


def parse(data: bytes) -> tuple[dict[str, str], list[Update]]:
    """An update set file back into (its header, its updates): what an instance reads when the
    file is imported. ValueError if it is not one."""
    try:
        root = ET.fromstring(data)  # noqa: S314 (stdlib ElementTree expands no external entities)
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    remote = root.find("sys_remote_update_set")
    if root.tag != "unload" or remote is None:
        raise ValueError("not an update set: expected <unload> with a <sys_remote_update_set>")
    header = {child.tag: child.text or "" for child in remote}
    updates = []
    for update in root.iter("sys_update_xml"):
        name = update.findtext("name") or ""
        try:
            payload = ET.fromstring((update.findtext("payload") or "").encode())  # noqa: S314
        except ET.ParseError as exc:
            raise ValueError(f"update {name!r}: its payload is not well-formed: {exc}") from None
        if payload.tag != "record_update":
            raise ValueError(f"update {name!r}: its payload is not a <record_update>")
        updates.append(
            Update(name, update.findtext("type") or "", update.findtext("table") or "", payload)
        )
    return header, updates
