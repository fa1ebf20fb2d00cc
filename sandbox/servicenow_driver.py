"""The people and the system around a ServiceNow desk, acting on the ServiceNow simulator through
the ``/api/now/v2/table`` alias: agents set the request field or click the UI action, callers
change, an admin switches the business rule ``deskgate setup`` installed on and off."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from connectors.servicenow.records import RULE_NAME, UI_ACTION_ID, action_ui_action_id
from sandbox.common import pooled_client
from sandbox.driver import AgentStatus, TicketView

if TYPE_CHECKING:
    from sandbox.servicenow import ServiceNowSimConfig

DESK = "acme_servicenow"  # the desk's name in the generated config
# The request field's values people set, and the reason each stands for (a choice field).
TRIGGERS = {"mfa_reset": "MFA reset", "account_unlock": "account unlock"}
FLAG_FIELD = "u_idv_request"


class ServiceNowDriver:
    """Acts through the ``/api/now/v2/table`` alias, so the simulator's call counts tell the
    driver's calls (v2) from Deskgate's (``/api/now/table``)."""

    desk = DESK
    system = "servicenow"
    table = "incident"
    lifecycle_calls: ClassVar[dict[str, int]] = {
        # record + caller in one read: before the gate, then just before each write (no Safe
        # Update on the Table API, so the connector re-reads to refuse a changed record)
        "GET /api/now/table/<table>/<sys_id>": 3,
        # sys_audit: when the caller's e-mail last changed (a warm worker already knows that
        # sys_user is audited: it asks that at most every 10 minutes), and who set the flag
        # field (the audit trail's flagged_by)
        "GET /api/now/table/<table>": 2,
        "PATCH /api/now/table/<table>/<sys_id>": 2,  # the gate, the outcome
    }
    statuses: ClassVar[dict[AgentStatus, str]] = {"open": "2", "solved": "6", "closed": "7"}

    def __init__(self, sim: httpx.Client, config: ServiceNowSimConfig) -> None:
        self.sim = sim
        self.config = config
        self.api = pooled_client(
            base_url=f"{sim.base_url}/api/now/v2/table",
            auth=(config.username, config.password),
            timeout=10,
        )

    def is_driver_call(self, call: str) -> bool:
        return "/api/now/v2/" in call

    def _create(self, table: str, values: dict[str, Any]) -> str:
        resp = self.api.post(f"/{table}", json=values)
        resp.raise_for_status()
        return str(resp.json()["result"]["sys_id"])

    def _user(self, name: str, email: str | None) -> str:
        first, _, last = name.partition(" ")
        handle = (email or name).split("@")[0].lower().replace(" ", ".")
        return self._create(
            "sys_user",
            {"user_name": handle, "first_name": first, "last_name": last, "email": email or ""},
        )

    def create_ticket(self, name: str, email: str | None, subject: str) -> str:
        caller = self._user(name, email)
        return self._create(self.table, {"short_description": subject, "caller_id": caller})

    def flag(self, ticket_id: str, reason: str = "MFA reset") -> None:
        """What an agent or a flow does: set the request field; the business rule pushes."""
        value = next(v for v, r in TRIGGERS.items() if r == reason)
        self.api.patch(f"/{self.table}/{ticket_id}", json={FLAG_FIELD: value}).raise_for_status()

    def mistype_flag(self, ticket_id: str) -> str:
        """An agent (or an import) who writes the flag field's value one letter off (a string
        field takes any value); returns the value."""
        value = "mfa_rest"
        self.api.patch(f"/{self.table}/{ticket_id}", json={FLAG_FIELD: value}).raise_for_status()
        return value

    def set_push(self, enabled: bool) -> None:
        """An admin switches Deskgate's business rule on or off (its ``active`` field)."""
        admin = (self.config.admin_username, self.config.admin_password)
        rules = self.api.get(
            "/sys_script", auth=admin,
            params={"sysparm_query": f"collection={self.table}^name={RULE_NAME}",
                    "sysparm_fields": "sys_id"},
        )  # fmt: skip
        rules.raise_for_status()
        for rule in rules.json()["result"]:
            self.api.patch(
                f"/sys_script/{rule['sys_id']}", json={"active": enabled}, auth=admin
            ).raise_for_status()

    def click_verify(self, ticket_id: str) -> None:
        """An agent clicks "Request identity verification" on the record's form."""
        self.sim.post(
            "/_sandbox/ui_action",
            json={"table": self.table, "sys_id": ticket_id, "action_name": UI_ACTION_ID},
        ).raise_for_status()

    def ask_action(self, ticket_id: str, action: str, user: str | None = None) -> None:
        """An agent (``user``, by default the driver's agent) clicks "Deskgate: reset MFA"..."""
        name = action_ui_action_id(action)
        body = {"table": self.table, "sys_id": ticket_id, "action_name": name, "user": user}
        self.sim.post("/_sandbox/ui_action", json=body).raise_for_status()

    def raw(self, ticket_id: str) -> dict[str, Any]:
        resp = self.sim.get(f"/_sandbox/records/{self.table}/{ticket_id}")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def notes(self, ticket_id: str) -> list[str]:
        journal = self.raw(ticket_id).get("journal", [])
        entries = [j for j in journal if j.get("element") == "work_notes"]  # oldest first
        return [j["value"] for j in entries if "Deskgate" in j["value"]]

    def view(self, ticket_id: str) -> TicketView:
        record = self.raw(ticket_id)["record"]
        marker = record.get("u_idv_status") or None
        state = record["state"]
        flagged = record.get(FLAG_FIELD) in TRIGGERS
        subject = record.get("short_description", "")
        return TicketView(state, marker, flagged, state == "3", record["number"], subject)

    def all_markers(self) -> dict[str, str | None]:
        """Deskgate's marker on every ticket of the desk, in one read."""
        params = {"sysparm_fields": "sys_id,u_idv_status", "sysparm_limit": "10000"}
        resp = self.api.get(f"/{self.table}", params=params)
        resp.raise_for_status()
        return {r["sys_id"]: r.get("u_idv_status") or None for r in resp.json()["result"]}

    def change_requester(self, ticket_id: str, name: str, email: str) -> None:
        caller = self._user(name, email)
        self.api.patch(f"/{self.table}/{ticket_id}", json={"caller_id": caller}).raise_for_status()

    def change_requester_before_next_write(self, ticket_id: str, name: str, email: str) -> None:
        """An agent changes the caller between Deskgate's re-read and its next write (the Table
        API has no conditional write to refuse it)."""
        caller = self._user(name, email)
        self.sim.put(
            f"/_sandbox/edit_before_write/{self.table}/{ticket_id}", json={"caller_id": caller}
        ).raise_for_status()

    def tamper(
        self, ticket_id: str, note: str, *, marker: str = "pending", as_deskgate: bool = False
    ) -> None:
        """What someone who may write Deskgate's status field can do in one update: set it and
        the flag, and add a work note in any words (as themselves: the Table API stamps the
        author). The instance's write ACL keeps that field from agents, so this is an admin
        (admin_overrides), or Deskgate's own user."""
        sim = self.config
        who = (sim.username, sim.password) if as_deskgate else (
            sim.admin_username, sim.admin_password)  # fmt: skip
        values = {
            "work_notes": note,
            "u_idv_status": marker,
            FLAG_FIELD: next(iter(TRIGGERS)),
        }
        self.api.patch(f"/{self.table}/{ticket_id}", json=values, auth=who).raise_for_status()

    def lift_gate(self, ticket_id: str, *, marker: bool = False) -> str:
        """An agent moves the record off On Hold (state 2, In Progress; sys_audit records it as
        them). Deskgate's status field has a write ACL for Deskgate's role, so clearing the
        marker takes an admin (admin_overrides), as on an instance."""
        sim = self.config
        if marker:
            who = (sim.admin_username, sim.admin_password)
            values = {"u_idv_status": ""}
        else:
            who = (sim.agent_username, sim.agent_password)
            values = {"state": "2", "hold_reason": ""}
        self.api.patch(f"/{self.table}/{ticket_id}", json=values, auth=who).raise_for_status()
        return who[0]

    def set_marker(self, ticket_id: str, marker: str) -> str:
        """An admin sets Deskgate's status field by hand (its write ACL keeps agents out)."""
        sim = self.config
        who = (sim.admin_username, sim.admin_password)
        self.api.patch(
            f"/{self.table}/{ticket_id}", json={"u_idv_status": marker}, auth=who
        ).raise_for_status()
        return who[0]

    def change_contact(self, ticket_id: str, email: str) -> None:
        """An agent edits the caller's e-mail on their user record."""
        caller = self.raw(ticket_id)["record"]["caller_id"]
        self.api.patch(f"/sys_user/{caller}", json={"email": email}).raise_for_status()

    def edit(
        self, ticket_id: str, *, subject: str | None = None, status: AgentStatus | None = None
    ) -> None:
        """An agent's own edit: retitle the record, resolve or close it."""
        values: dict[str, Any] = {}
        if subject is not None:
            values["short_description"] = subject
        if status is not None:
            values["state"] = self.statuses[status]
        self.api.patch(f"/{self.table}/{ticket_id}", json=values).raise_for_status()

    def delete(self, ticket_id: str) -> None:
        self.api.delete(f"/{self.table}/{ticket_id}").raise_for_status()

    def close(self) -> None:
        self.api.close()
