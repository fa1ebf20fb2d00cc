"""ServiceNow Table API: keyset polling, records with their caller in one read,
gate and outcome writes.

A record is flagged by a field's value (``flag_field`` in ``triggers``: a ``u_idv_required`` flag,
or a category), because native tags cannot be written through the Table API. Deskgate's state
lives in ``status_field`` and the work notes. Each read asks for the requester's identity by
dot-walking, so a record and its caller cost one GET; each write is one PATCH whose response is
the record as it now stands. The Table API has no optimistic concurrency: writes touch only the
fields Deskgate owns (plus state and hold reason while the record is in the gate state), and each
write re-reads the record first and answers a change as a conflict (one GET either way: the
worker writes the outcome against the record its gate write returned, without reading it).
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from config.privacy import mask_email
from connectors.action_requests import requested_action
from connectors.http import Conflict, Fatal, NotFound, json_body, new_client, request
from connectors.identity_provider import ACTIONS
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.oauth import ServiceNowOAuth, auth_for
from connectors.ticketing import MARKERS, OPEN_MARKERS, Person, Ticket

SYSTEM = "servicenow"
SYS_ID = re.compile(r"^[0-9a-f]{32}$")
NUMBER = re.compile(r"^[A-Z]{2,8}[0-9]{4,12}$")  # a record number: INC0010001, RITM0001234
PAGE = 100
PAGES_PER_POLL = 10  # a larger backlog continues from the stored cursor on the next poll
PERSON_FIELDS = ("sys_id", "email", "user_name", "mobile_phone", "employee_number")
# How long "this sys_user field is audited" is believed before it is asked again.
AUDITED_FOR = 600.0
# The sys_user field behind each of the requester's fields Deskgate may rely on.
USER_FIELDS = {"email": "email", "phone": "mobile_phone", "external_id": "employee_number"}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the Table API's dates, in UTC
AUDIT_KEY = ("tablename", "documentkey", "fieldname", "newvalue")
JOURNAL_FIELDS = ("work_notes", "comments")  # written as journal entries, never on the record
SCAN_LAG = 60.0  # seconds a complete marker scan looks back on its next run


def describe_error(response: httpx.Response) -> str:
    """ServiceNow's envelope: ``{"error": {"message", "detail"}, "status": "failure"}``."""
    body = response.json()
    error = body.get("error")
    if isinstance(error, dict):
        detail = error.get("detail")
        return f"{error.get('message', '')}" + (f": {detail}" if detail else "")
    return str(body.get("error_description") or error or "")


def no_audit(attributes: str) -> bool:
    """A dictionary entry's ``attributes`` (``key=value`` pairs, comma-separated) exclude the
    field from auditing: ``no_audit=true``."""
    pairs = (part.partition("=") for part in attributes.split(","))
    return any(k.strip() == "no_audit" and v.strip().lower() == "true" for k, _, v in pairs)


def _instant(value: Any) -> float | None:
    try:
        return datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


class ServiceNowConnector:
    def __init__(
        self, name: str, config: ServiceNowDeskConfig, timeout: float, deadline: float = 30.0
    ) -> None:
        self.name = name
        self.config = config
        self.auth = auth_for(config, timeout, deadline)
        self.client = new_client(
            config.base,
            timeout,
            deadline=deadline,
            auth=self.auth,
            headers={"Content-Type": "application/json"},
        )
        self.path = f"/api/now/table/{config.table}"
        self._audited_until: dict[str, float] = {}  # sys_user field -> known audited until
        who = config.requester_field
        self.fields = ",".join(
            [
                "sys_id", "number", "state", "active", "sys_updated_on", "sys_mod_count",
                config.flag_field, config.status_field, config.action_field, who,
                *(f"{who}.{f}" for f in (*PERSON_FIELDS, "sys_created_on")),
            ]
        )  # fmt: skip

    def close(self) -> None:
        self.client.close()
        if isinstance(self.auth, ServiceNowOAuth):
            self.auth.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        response = request(self.client, SYSTEM, method, url, describe_error, **kwargs)
        return json_body(SYSTEM, response).get("result")

    # -- reading ---------------------------------------------------------------------------

    def _flagged_query(self, gated: bool) -> str:
        c = self.config
        flagged = f"{c.flag_query}^{c.flag_field}IN{','.join(c.triggers)}"
        open_markers = ",".join(sorted(OPEN_MARKERS))
        if gated:
            return f"{flagged}^{c.status_field}IN{open_markers}"
        if c.consume_flag:  # a final outcome drops the flag
            return f"{flagged}^{c.status_field}ISEMPTY^OR{c.status_field}NOT IN{open_markers}"
        # The flag stays: a record with any outcome in the status field is done.
        return f"{flagged}^{c.status_field}ISEMPTY"

    def find_flagged(
        self, cursor: str | None, *, gated: bool = False
    ) -> tuple[list[str], str | None]:
        """Flagged records by keyset pages (``_keyset``), a larger backlog continuing from the
        cursor on the next poll; without ``gated``, records asking for an action too, read at
        the start of each scan (requests are few: each is cleared once handled)."""
        rows, after, done = self._keyset(self._flagged_query(gated), cursor)
        found = [row["sys_id"] for row in rows]
        if not gated and cursor is None:
            field = self.config.action_field
            query = f"{self.config.flag_query}^{field}IN{','.join(ACTIONS)}"
            asking, _, _ = self._keyset(query, None, field)
            # Checked again: an instance without the field ignores the condition (all rows).
            found += [
                r["sys_id"] for r in asking if r.get(field) in ACTIONS and r["sys_id"] not in found
            ]
        return found, None if done else after

    def find_marked(self, marker: str, cursor: str | None) -> tuple[list[str], str]:
        """The same keyset scan. A complete scan's cursor is kept as a time alone, a minute
        before the newest change read: the next call reads from there on, so a record changed
        in the same second but ordered before the last one read, or committed late, is not
        missed (re-reading a few is harmless)."""
        query = f"{self.config.flag_query}^{self.config.status_field}={marker}"
        rows, after, done = self._keyset(query, cursor)
        if done and after:
            newest = _instant(after.partition("|")[0])
            if newest is not None:
                moment = datetime.fromtimestamp(newest - SCAN_LAG, UTC)
                after = moment.strftime(TIME_FORMAT)
        return [row["sys_id"] for row in rows], after or ""

    def _keyset(
        self, base: str, cursor: str | None, *fields: str
    ) -> tuple[list[dict[str, Any]], str | None, bool]:
        """Keyset pages ordered by (sys_updated_on, sys_id): rows sharing a timestamp are neither
        skipped nor repeated, and rows updated mid-scan move forward, never behind the cursor.
        ``^NQ`` (a new OR'ed query) is needed because ``^OR`` binds tighter than ``^``. Returns
        the rows (``sys_id``, ``sys_updated_on`` and ``fields``), the cursor after the last row
        read, and whether the scan reached the end."""
        found: list[dict[str, Any]] = []
        for _ in range(PAGES_PER_POLL):
            query = base
            if cursor and "|" not in cursor:  # a time alone: from then on
                query = f"{base}^sys_updated_on>={cursor}"
            elif cursor:
                stamp, _, last = cursor.partition("|")
                query = (
                    f"{base}^sys_updated_on>{stamp}^NQ{base}^sys_updated_on={stamp}^sys_id>{last}"
                )
            rows = self._call(
                "GET",
                self.path,
                params={
                    "sysparm_query": f"{query}^ORDERBYsys_updated_on^ORDERBYsys_id",
                    "sysparm_fields": ",".join(["sys_id", "sys_updated_on", *fields]),
                    "sysparm_limit": PAGE,
                    "sysparm_exclude_reference_link": "true",
                    "sysparm_no_count": "true",
                },
            )
            found += rows
            if rows:
                cursor = f"{rows[-1]['sys_updated_on']}|{rows[-1]['sys_id']}"
            if len(rows) < PAGE:
                return found, cursor, True
        return found, cursor, False

    def get_ticket(self, ticket_id: str) -> Ticket | None:
        if NUMBER.fullmatch(ticket_id):  # as agents quote it (``deskgate explain INC0010001``)
            rows = self._call(
                "GET",
                self.path,
                params={**self._read_params(), "sysparm_query": f"number={ticket_id}",
                        "sysparm_limit": "1"},
            )  # fmt: skip
            return self._ticket(rows[0]) if rows else None
        if not SYS_ID.fullmatch(ticket_id):
            return None
        try:
            row = self._call("GET", f"{self.path}/{ticket_id}", params=self._read_params())
        except NotFound:
            return None
        return self._ticket(row)

    def _read_params(self) -> dict[str, str]:
        return {"sysparm_fields": self.fields, "sysparm_exclude_reference_link": "true"}

    def _ticket(self, row: dict[str, Any]) -> Ticket:
        c, who = self.config, self.config.requester_field
        state = str(row.get("state", ""))
        status = str(row.get(c.status_field) or "")
        requester_id = str(row.get(who) or "") or None
        requester = None
        if requester_id:
            value = {f: str(row.get(f"{who}.{f}") or "") for f in PERSON_FIELDS}
            requester = Person(
                id=requester_id,
                email=value["email"] or None,
                phone=value["mobile_phone"] or None,
                external_id=value["employee_number"] or None,
                fields={k: v for k, v in value.items() if v},
                created_at=_instant(row.get(f"{who}.sys_created_on")),
            )
        return Ticket(
            id=str(row["sys_id"]),
            display_id=str(row.get("number") or row["sys_id"]),
            requester_id=requester_id,
            reason=c.triggers.get(str(row.get(c.flag_field, ""))),
            marker=status if status in MARKERS else None,
            status=state,
            active=row.get("active") != "false" and state not in c.inactive_states,
            writable=state not in c.closed_states,
            # sys_updated_on has 1 s precision; the update counter tells same-second edits apart.
            version=f"{row.get('sys_updated_on', '')}#{row.get('sys_mod_count', '')}",
            requester=requester,
            held=state == c.gate_state,
            action_request=requested_action(
                [asked] if (asked := str(row.get(c.action_field) or "")) else [],
                desk=self.name,
                ticket=str(row["sys_id"]),
            ),
            labels=(flag,) if (flag := str(row.get(c.flag_field) or "")) else (),
        )

    def own_notes(self, ticket: Ticket, text: str) -> list[str]:
        author = self.config.note_author
        rows = self._call(
            "GET",
            "/api/now/table/sys_journal_field",
            params={
                "sysparm_query": f"element_id={ticket.id}^element=work_notes"
                f"^sys_created_by={author}^valueLIKE{text}^ORDERBYDESCsys_created_on",
                "sysparm_fields": "value,sys_created_by",
                "sysparm_limit": 20,
            },
        )
        # Checked again here: an instance ignores a query condition it cannot apply.
        return [str(r.get("value", "")) for r in rows if str(r.get("sys_created_by", "")) == author]

    def changed_at(self, person: Person, field: str) -> float | None:
        """The newest ``sys_audit`` entry for that field of the user. With none, the user's
        creation time, but only where the field is audited (``field_audited``): otherwise an
        unaudited field and an unchanged one look alike, and the age cannot be told. No read on
        ``sys_audit`` (or rows hidden by ACLs): cannot be told."""
        column = USER_FIELDS.get(field) or field.removeprefix("user_field:")
        if column not in PERSON_FIELDS or not self.field_audited(column):
            return None
        mine = self._audit(f"tablename=sys_user^documentkey={person.id}^fieldname={column}")
        if mine is None:
            return None
        hit = [r for r in mine if (r.get("fieldname"), r.get("documentkey")) == (column, person.id)]
        if hit:
            return _instant(hit[0].get("sys_created_on"))
        return person.created_at

    def field_audited(self, column: str) -> bool:
        """Whether a change of ``sys_user.<column>`` leaves a ``sys_audit`` row. Auditing is
        decided per table and per field: a field whose dictionary attributes say
        ``no_audit=true`` is never audited, even in an audited table. Where the dictionary entry
        is readable and does not exclude it, the table must be audited (some sys_user audit row
        exists); where it is not readable, an audit row for that very field must exist. Believed
        for AUDITED_FOR seconds once seen; "cannot tell" is False."""
        if time.monotonic() < self._audited_until.get(column, 0.0):
            return True
        attributes = self._attributes("sys_user", column)
        if attributes is not None and no_audit(attributes):
            return False
        evidence = "tablename=sys_user" if attributes is not None else (
            f"tablename=sys_user^fieldname={column}")  # fmt: skip
        if not self._audit(evidence):
            return False
        self._audited_until[column] = time.monotonic() + AUDITED_FOR
        return True

    def _attributes(self, table: str, element: str) -> str | None:
        """The field's dictionary ``attributes``, or None where its entry cannot be read."""
        try:
            rows = self._call(
                "GET",
                "/api/now/table/sys_dictionary",
                params={"sysparm_query": f"name={table}^element={element}",
                        "sysparm_fields": "name,element,attributes", "sysparm_limit": 1},
            )  # fmt: skip
        except Fatal:
            return None
        found = [r for r in rows if (r.get("name"), r.get("element")) == (table, element)]
        return str(found[0].get("attributes") or "") if found else None

    def _audit(self, query: str) -> list[dict[str, Any]] | None:
        """The newest ``sys_audit`` row matching ``query`` (as a list), or None if unreadable."""
        try:
            rows = self._call(
                "GET",
                "/api/now/table/sys_audit",
                params={
                    "sysparm_query": f"{query}^ORDERBYDESCsys_created_on",
                    "sysparm_fields": "sys_created_on,fieldname,documentkey,tablename",
                    "sysparm_limit": 1,
                },
            )
        except Fatal:
            return None
        return [r for r in rows if r.get("tablename") == "sys_user"]

    def flagged_by(self, ticket: Ticket) -> str | None:
        """The ``user`` of the newest ``sys_audit`` row that set the flag field to a trigger
        value on this record: the platform's own record of the change (its user name; one that
        is an e-mail address is masked). None without such a row or without read on
        ``sys_audit``."""
        c = self.config
        try:
            rows = self._call(
                "GET",
                "/api/now/table/sys_audit",
                params={
                    "sysparm_query": f"tablename={c.table}^documentkey={ticket.id}"
                    f"^fieldname={c.flag_field}^ORDERBYDESCsys_created_on",
                    "sysparm_fields": "tablename,documentkey,fieldname,newvalue,user",
                    "sysparm_limit": 10,
                },
            )
        except Fatal:
            return None
        for row in rows:  # checked again: an instance ignores a condition it cannot apply
            if (row.get("tablename"), row.get("documentkey"), row.get("fieldname")) != (
                c.table, ticket.id, c.flag_field,
            ) or str(row.get("newvalue", "")) not in c.triggers:  # fmt: skip
                continue
            user = str(row.get("user") or "")
            return (mask_email(user) if "@" in user else user) or None
        return None

    def get_requester(self, ticket: Ticket) -> Person | None:
        return ticket.requester  # read with the record, by dot-walking

    def gate_lifted_by(self, ticket: Ticket) -> str | None:
        """The ``user`` (a user name) of the newest ``sys_audit`` row that moved the record's
        ``state`` off the gate state or its status field off ``pending``; without a readable
        row, the record's ``sys_updated_by`` (whoever changed it last)."""
        c = self.config
        try:
            rows = self._call(
                "GET",
                "/api/now/table/sys_audit",
                params={
                    "sysparm_query": f"tablename={c.table}^documentkey={ticket.id}"
                    f"^fieldnameINstate,{c.status_field}^ORDERBYDESCsys_created_on",
                    "sysparm_fields": "tablename,documentkey,fieldname,oldvalue,newvalue,user",
                    "sysparm_limit": 20,
                },
            )
        except Fatal:
            rows = []
        opened = {"state": c.gate_state, c.status_field: "pending"}
        for row in rows:  # checked again: an instance ignores a condition it cannot apply
            field = str(row.get("fieldname", ""))
            if (row.get("tablename"), row.get("documentkey")) != (c.table, ticket.id):
                continue
            if field in opened and row.get("oldvalue") == opened[field] != row.get("newvalue"):
                return str(row.get("user") or "") or None
        try:
            record = self._call(
                "GET", f"{self.path}/{ticket.id}", params={"sysparm_fields": "sys_updated_by"}
            )
        except (Fatal, NotFound):
            return None
        return str(record.get("sys_updated_by") or "") or None

    def requested_by(self, ticket: Ticket, action: str) -> str | None:
        """The user name on the newest ``sys_audit`` row that set the record's action field to
        ``action``: whoever saved that change (a UI action runs as the agent who pressed it).
        None where the row cannot be read (no read on ``sys_audit``, or the field unaudited)."""
        c = self.config
        query = (
            f"tablename={c.table}^documentkey={ticket.id}^fieldname={c.action_field}"
            f"^newvalue={action}^ORDERBYDESCsys_created_on"
        )
        try:
            rows = self._call(
                "GET",
                "/api/now/table/sys_audit",
                params={"sysparm_query": query, "sysparm_limit": 1,
                        "sysparm_fields": "tablename,documentkey,fieldname,newvalue,user"},
            )  # fmt: skip
        except Fatal:
            return None
        # Checked again here: an instance ignores a query condition it cannot apply.
        wanted = (c.table, ticket.id, c.action_field, action)
        hit = [r for r in rows if tuple(str(r.get(k, "")) for k in AUDIT_KEY) == wanted]
        return str(hit[0].get("user") or "") or None if hit else None

    # -- writing ---------------------------------------------------------------------------

    def clear_action(self, ticket: Ticket, note: str) -> Ticket:
        """Re-read, then one PATCH emptying the action field, with a work note."""
        self._unchanged(ticket)
        return self._patch(ticket, {"work_notes": note, self.config.action_field: ""})

    def _unchanged(self, ticket: Ticket) -> None:
        """The Table API has no conditional write: re-read, and answer a record an agent changed
        since ``ticket`` (closed it, changed its caller) as Zendesk's Safe Update would, so the
        worker re-decides instead of overwriting. The caller's record is left out of the
        comparison: the worker may hold the ticket as its own last write returned it."""
        current = self.get_ticket(ticket.id)
        if current is None:
            raise NotFound(SYSTEM, "the record was deleted", 404)
        if replace(current, requester=None) != replace(ticket, requester=None):
            raise Conflict(SYSTEM, "the record changed since it was read", 409)

    def gate(self, ticket: Ticket, note: str) -> Ticket:
        self._unchanged(ticket)
        c = self.config
        fields = {"work_notes": note, c.status_field: "pending", "state": c.gate_state}
        if c.gate_hold_reason is not None:
            fields["hold_reason"] = c.gate_hold_reason
        return self._patch(ticket, fields)

    def record(self, ticket: Ticket, marker: str, note: str, *, release: bool) -> Ticket:
        self._unchanged(ticket)
        c = self.config
        fields = {"work_notes": note, c.status_field: marker}
        if release and ticket.status == c.gate_state:  # an agent's own state change stands
            fields["state"] = c.release_state
            if c.gate_hold_reason is not None:
                fields["hold_reason"] = ""
        if marker not in OPEN_MARKERS and c.consume_flag:
            fields[c.flag_field] = c.consumed_value
        return self._patch(ticket, fields)

    def _patch(self, ticket: Ticket, fields: dict[str, str]) -> Ticket:
        """One PATCH, believed only as far as the record it returns shows it: a field a write
        ACL denies Deskgate's user is dropped from the write with a 200 all the same (journal
        fields never show on the record, so they cannot be compared)."""
        written = [f for f in fields if f not in JOURNAL_FIELDS]
        params = {**self._read_params(), "sysparm_fields": ",".join([self.fields, *written])}
        row = self._call("PATCH", f"{self.path}/{ticket.id}", params=params, json=fields)
        dropped = sorted(f for f in written if str(row.get(f, "")) != fields[f])
        if dropped:
            raise Fatal(
                SYSTEM,
                f"ServiceNow answered 200 but did not keep {', '.join(dropped)}: a write ACL "
                "(or a business rule) denies them to Deskgate's user; give that user the role "
                "the field's write ACL needs",
            )
        return self._ticket(row)
