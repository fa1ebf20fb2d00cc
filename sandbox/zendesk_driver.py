"""The people and the system around a Zendesk desk, acting on the Zendesk simulator: agents and
macros tag tickets, requesters change, triggers switch on and off."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from connectors.action_requests import request_title
from sandbox.common import pooled_client
from sandbox.driver import AgentStatus, TicketView

if TYPE_CHECKING:
    from sandbox.zendesk import ZendeskSimConfig

DESK = "acme_zendesk"  # the desk's name in the generated config
AGENT = "agent@acme.test"  # the account Deskgate authenticates as (an agent)
ADMIN = "admin@acme.test"  # the admin `deskgate setup` uses
PEOPLE_AGENT = "it.agent@acme.test"  # the agent whose clicks the driver makes
# The trigger tags people add, and the reason each stands for (the same two reasons on every desk).
TRIGGERS = {"idv_mfa_reset": "MFA reset", "idv_account_unlock": "account unlock"}


class ZendeskDriver:
    desk = DESK
    system = "zendesk"
    lifecycle_calls: ClassVar[dict[str, int]] = {
        # one read before gating (the requester's record sideloaded); the outcome is written
        # with Safe Update against the ticket the gate write returned, so it needs no read
        "GET /api/v2/tickets/<int:ticket_id>": 1,
        # how old the requester's e-mail is (a contact changed recently gets no link)
        "GET /api/v2/users/<int:user_id>/identities": 1,
        # who added the trigger tag, by the ticket's audits (the audit trail's flagged_by)
        "GET /api/v2/tickets/<int:ticket_id>/audits": 1,
        "PUT /api/v2/tickets/<int:ticket_id>": 2,  # the gate, the outcome
    }
    markers = frozenset(
        f"idv_{m}" for m in ("pending", "verified", "failed", "review", "expired", "error")
    )
    statuses: ClassVar[dict[AgentStatus, str]] = {
        "open": "open",
        "solved": "solved",
        "closed": "closed",
    }

    def __init__(self, sim: httpx.Client, config: ZendeskSimConfig) -> None:
        self.sim = sim
        self.api = pooled_client(
            base_url=f"{sim.base_url}/api/v2",
            auth=(f"{config.email}/token", config.api_token),
            timeout=10,
        )
        # Another agent, clicking in the agent UI (its writes are not Deskgate's).
        self.agent = pooled_client(
            base_url=f"{sim.base_url}/api/v2",
            auth=(f"{config.people_agent_email}/token", config.api_token),
            timeout=10,
        )

    def close(self) -> None:
        self.api.close()
        self.agent.close()

    def is_driver_call(self, call: str) -> bool:
        """Creating tickets and users and adding tags are people's calls, not Deskgate's."""
        return call in (
            "POST /api/v2/tickets",
            "POST /api/v2/users",
            "PUT /api/v2/tickets/<int:ticket_id>/tags",
        )

    def create_ticket(self, name: str, email: str | None, subject: str) -> str:
        requester: dict[str, Any] = {"name": name}
        if email:
            requester["email"] = email
        body = {
            "ticket": {"subject": subject, "comment": {"body": subject}, "requester": requester}
        }
        resp = self.api.post("/tickets.json", json=body)
        resp.raise_for_status()
        return str(resp.json()["ticket"]["id"])

    def flag(self, ticket_id: str, reason: str = "MFA reset") -> None:
        """What an agent or a macro does: add the trigger tag, leaving the other tags alone."""
        tag = next(t for t, r in TRIGGERS.items() if r == reason)
        self.api.put(f"/tickets/{ticket_id}/tags.json", json={"tags": [tag]}).raise_for_status()

    def mistype_flag(self, ticket_id: str) -> str:
        """An agent who types the trigger tag by hand, one letter off; returns the tag."""
        tag = "idv_mfa_rest"
        self.api.put(f"/tickets/{ticket_id}/tags.json", json={"tags": [tag]}).raise_for_status()
        return tag

    def click_macro(self, ticket_id: str, reason: str = "MFA reset") -> None:
        """What an agent's click on the macro "Verify identity: <reason>" does: the agent UI
        asks Zendesk what the macro makes of the ticket (nothing saved), then the agent
        submits the ticket with those changes, as themselves."""
        self._apply_macro(ticket_id, f"Verify identity: {reason}")

    def ask_action(self, ticket_id: str, action: str) -> None:
        """An agent asks for an identity-provider action: the macro "Deskgate: reset MFA"..."""
        self._apply_macro(ticket_id, request_title(action))

    def _apply_macro(self, ticket_id: str, title: str) -> None:
        found = self.agent.get("/macros/search.json", params={"query": title})
        found.raise_for_status()
        macro = next(m for m in found.json()["macros"] if m["title"] == title and m["active"])
        applied = self.agent.get(f"/tickets/{ticket_id}/macros/{macro['id']}/apply.json")
        applied.raise_for_status()
        self._save(ticket_id, {"tags": applied.json()["result"]["ticket"]["tags"]})

    def reply(self, ticket_id: str, text: str) -> None:
        """The requester answers on the ticket (a public comment by them)."""
        requester = self.raw(ticket_id)["ticket"]["requester_id"]
        comment = {"body": text, "public": True, "author_id": requester}
        self._save(ticket_id, {"comment": comment})

    def comment(self, ticket_id: str, text: str) -> None:
        """Another agent writes an internal note."""
        self._save(ticket_id, {"comment": {"body": text, "public": False}})

    def _save(self, ticket_id: str, ticket: dict[str, Any]) -> None:
        self.agent.put(f"/tickets/{ticket_id}.json", json={"ticket": ticket}).raise_for_status()

    def pushes(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt the simulator made (its log)."""
        log: dict[str, Any] = self.sim.get("/_sandbox/webhook_deliveries").json()
        return list(log["deliveries"])

    def set_push(self, enabled: bool) -> None:
        """Switch the trigger (the signed push) on or off; polling still finds flagged tickets."""
        self.sim.put("/_sandbox/triggers", json={"enabled": enabled}).raise_for_status()

    def raw(self, ticket_id: str) -> dict[str, Any]:
        resp = self.sim.get(f"/_sandbox/tickets/{ticket_id}")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def notes(self, ticket_id: str) -> list[str]:
        """Deskgate's internal notes, oldest first."""
        comments = self.raw(ticket_id).get("comments", [])
        return [c["body"] for c in comments if not c.get("public") and "Deskgate" in c["body"]]

    def view(self, ticket_id: str) -> TicketView:
        ticket = self.raw(ticket_id)["ticket"]
        tags = set(ticket["tags"])
        marker = next((t.removeprefix("idv_") for t in sorted(tags & self.markers)), None)
        status = ticket["status"]
        flagged = bool(tags & set(TRIGGERS))
        display = f"#{ticket['id']}"
        return TicketView(status, marker, flagged, status == "hold", display, ticket["subject"])

    def all_markers(self) -> dict[str, str | None]:
        """Deskgate's marker on every ticket of the desk, in one read."""
        tickets = self.sim.get("/_sandbox/tickets").json()["tickets"]
        return {
            str(t["id"]): next(
                (m.removeprefix("idv_") for m in sorted(set(t["tags"]) & self.markers)), None
            )
            for t in tickets
        }

    def change_requester(self, ticket_id: str, name: str, email: str) -> None:
        user = self.api.post("/users.json", json={"user": {"name": name, "email": email}})
        user.raise_for_status()
        requester = user.json()["user"]["id"]
        body = {"ticket": {"requester_id": requester}}
        self.api.put(f"/tickets/{ticket_id}.json", json=body).raise_for_status()

    def _other_agent(self) -> int:
        email = f"it.agent.{uuid.uuid4().hex[:8]}@acme.test"
        body = {"user": {"name": "IT Agent", "email": email, "role": "agent"}}
        made = self.api.post("/users.json", json=body)
        made.raise_for_status()
        return int(made.json()["user"]["id"])

    def tamper(
        self, ticket_id: str, note: str, *, marker: str = "pending", as_deskgate: bool = False
    ) -> None:
        """What anyone who may write on tickets can do in one update: add Deskgate's marker and
        the trigger tag, and an internal note in any words, by another agent, or (Zendesk's API
        lets a caller name a comment's author) in Deskgate's own user's name."""
        me = int(self.api.get("/users/me.json").json()["user"]["id"])
        author = me if as_deskgate else self._other_agent()
        body = {
            "ticket": {
                "comment": {"body": note, "public": False, "author_id": author},
                "additional_tags": [f"idv_{marker}", next(iter(TRIGGERS))],
            }
        }
        self.api.put(f"/tickets/{ticket_id}.json", json=body).raise_for_status()

    def lift_gate(self, ticket_id: str, *, marker: bool = False) -> str:
        """Another agent reopens the held ticket, or removes the ``idv_pending`` tag through the
        tags endpoint: either leaves a ticket audit authored by that agent."""
        if marker:
            body = {"tags": ["idv_pending"]}
            removed = self.agent.request("DELETE", f"/tickets/{ticket_id}/tags.json", json=body)
            removed.raise_for_status()
        else:
            self.agent.put(
                f"/tickets/{ticket_id}.json", json={"ticket": {"status": "open"}}
            ).raise_for_status()
        return self._agent_id()

    def set_marker(self, ticket_id: str, marker: str) -> str:
        """Another agent adds Deskgate's marker tag (``idv_verified``, say) by hand."""
        body = {"tags": [f"idv_{marker}"]}
        self.agent.put(f"/tickets/{ticket_id}/tags.json", json=body).raise_for_status()
        return self._agent_id()

    def _agent_id(self) -> str:
        me = self.agent.get("/users/me.json")
        me.raise_for_status()
        return str(me.json()["user"]["id"])

    def change_contact(self, ticket_id: str, email: str) -> None:
        """An agent gives the requester a new e-mail and makes it the primary one."""
        requester = self.raw(ticket_id)["ticket"]["requester_id"]
        made = self.api.post(
            f"/users/{requester}/identities.json",
            json={"identity": {"type": "email", "value": email}},
        )
        made.raise_for_status()
        identity = made.json()["identity"]["id"]
        primary = self.api.put(f"/users/{requester}/identities/{identity}/make_primary.json")
        primary.raise_for_status()

    def edit(
        self, ticket_id: str, *, subject: str | None = None, status: AgentStatus | None = None
    ) -> None:
        """An agent's own edit, without Safe Update: retitle the ticket, solve or close it."""
        ticket: dict[str, Any] = {}
        if subject is not None:
            ticket["subject"] = subject
        if status is not None:
            ticket["status"] = self.statuses[status]
        self.api.put(f"/tickets/{ticket_id}.json", json={"ticket": ticket}).raise_for_status()

    def delete(self, ticket_id: str) -> None:
        self.api.delete(f"/tickets/{ticket_id}.json").raise_for_status()
