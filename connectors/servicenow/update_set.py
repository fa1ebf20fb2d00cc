"""The desk's records as an update set XML, for System Update Sets > Retrieved Update Sets >
Import Update Set from XML, then Preview and Commit.

The file is an ``<unload>`` holding one ``sys_remote_update_set`` and one ``sys_update_xml`` per
record, whose ``payload`` is the record's own XML (``<record_update table="...">``), escaped as
text, as the platform exports it. The secret property is not in it: a file is reviewed, mailed
and committed to repositories, and an update set promoted or imported again later must not
overwrite the secret an instance already has (an empty value would stop every push). The secret
is set once, by hand or with ``--apply``. Every sys_id derives from the desk
(``records.sys_id_for``), so a re-run writes the same bytes.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.records import Wanted, sys_id_for, wanted

# What the platform calls each table's records in an update set's "Type" column.
TYPES = {
    "sys_dictionary": "Dictionary",
    "sys_choice": "Choice",
    "sys_properties": "System Property",
    "sys_script": "Business Rule",
    "sys_ui_action": "UI Action",
}


def set_name(desk: str) -> str:
    return f"Deskgate ({desk})"


def _payload(record: Wanted) -> str:
    root = ET.Element("record_update", table=record.table)
    body = ET.SubElement(root, record.table, action="INSERT_OR_UPDATE")
    for name, value in sorted({**record.values, "sys_id": record.sys_id}.items()):
        ET.SubElement(body, name).text = value
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")


def render(desk: str, config: ServiceNowDeskConfig, public_url: str) -> bytes:
    """The update set for ``desk``; never the secret, nor its property (see above)."""
    set_id = sys_id_for("sys_remote_update_set", desk, config.table)
    unload = ET.Element("unload")
    remote = ET.SubElement(unload, "sys_remote_update_set", action="INSERT_OR_UPDATE")
    for name, value in (
        ("name", set_name(desk)),
        ("description", f"Deskgate identity verification on {config.table}: fields, choices, "
                        "properties, business rule and UI action. Made by `deskgate setup`."),
        ("state", "loaded"),
        ("application", "global"),
        ("sys_id", set_id),
    ):  # fmt: skip
        ET.SubElement(remote, name).text = value
    for record in wanted(desk, config, public_url):
        if record.secret:
            continue
        update = ET.SubElement(unload, "sys_update_xml", action="INSERT_OR_UPDATE")
        for name, value in (
            ("action", "INSERT_OR_UPDATE"),
            ("name", f"{record.table}_{record.sys_id}"),
            ("payload", _payload(record)),
            ("remote_update_set", set_id),
            ("table", record.values["name"] if record.table == "sys_properties"
                      else config.table),
            ("target_name", record.name),
            ("type", TYPES[record.table]),
            ("sys_id", sys_id_for("sys_update_xml", set_id, record.sys_id)),
        ):  # fmt: skip
            ET.SubElement(update, name).text = value
    ET.indent(unload)
    text = ET.tostring(unload, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode()


def parse(data: bytes) -> tuple[dict[str, str], list[tuple[str, dict[str, str]]]]:
    """An update set file back into (its header, [(table, the record's fields)]): what an
    instance reads when the file is imported. ValueError if it is not one."""
    try:
        root = ET.fromstring(data)  # noqa: S314 (stdlib ElementTree expands no external entities)
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    remote = root.find("sys_remote_update_set")
    if root.tag != "unload" or remote is None:
        raise ValueError("not an update set: expected <unload> with a <sys_remote_update_set>")
    header = {child.tag: child.text or "" for child in remote}
    records = []
    for update in root.iter("sys_update_xml"):
        payload = ET.fromstring((update.findtext("payload") or "").encode())  # noqa: S314
        for body in payload:
            records.append((body.tag, {child.tag: child.text or "" for child in body}))
    return header, records
