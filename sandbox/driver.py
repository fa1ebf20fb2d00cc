"""What every desk driver offers: the people and the ticketing system around Deskgate, acting
on a desk simulator for demos, tests and benchmarks. Each desk simulator ships one
(``Simulator.driver``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

AgentStatus = Literal["open", "solved", "closed"]


@dataclass(frozen=True)
class TicketView:
    status: str  # the desk's own status value
    marker: str | None  # Deskgate's state marker on the ticket
    flagged: bool  # a trigger is present
    held: bool  # in the desk's gate status (Zendesk hold, ServiceNow On Hold)
    display: str  # what people call it: "#12", "INC0010003"
    subject: str = ""  # the title agents edit (Zendesk subject, ServiceNow short description)


class DeskDriver(Protocol):
    """What people and the ticketing system do to tickets, for demos and tests."""

    desk: str  # the desk's name in Deskgate's config
    system: str  # the simulator's name in the registry (and in ``Stack.sim``)
    lifecycle_calls: ClassVar[
        dict[str, int]
    ]  # Deskgate's calls to the desk for one verified lifecycle
    statuses: ClassVar[dict[AgentStatus, str]]  # an agent's status as the desk writes it

    def create_ticket(self, name: str, email: str | None, subject: str) -> str: ...
    def is_driver_call(self, call: str) -> bool: ...
    def flag(self, ticket_id: str, reason: str = "MFA reset") -> None: ...
    def mistype_flag(self, ticket_id: str) -> str: ...
    def set_push(self, enabled: bool) -> None: ...
    def notes(self, ticket_id: str) -> list[str]: ...
    def view(self, ticket_id: str) -> TicketView: ...
    def all_markers(self) -> dict[str, str | None]: ...
    def change_requester(self, ticket_id: str, name: str, email: str) -> None: ...
    def tamper(
        self, ticket_id: str, note: str, *, marker: str = "pending", as_deskgate: bool = False
    ) -> None: ...
    def change_contact(self, ticket_id: str, email: str) -> None: ...
    def lift_gate(self, ticket_id: str, *, marker: bool = False) -> str:
        """Someone takes the ticket off hold (or, with ``marker``, removes the ``pending``
        marker) as themselves; returns who, as the desk names them (user id or user name)."""
        ...

    def set_marker(self, ticket_id: str, marker: str) -> str:
        """Someone sets Deskgate's marker by hand, as themselves; returns who."""
        ...

    def ask_action(self, ticket_id: str, action: str) -> None:
        """The driver's agent asks Deskgate for an IdP action (``reset_mfa``...) on the
        ticket, as the desk lets agents: Zendesk's macro, ServiceNow's UI action."""
        ...

    def edit(
        self, ticket_id: str, *, subject: str | None = None, status: AgentStatus | None = None
    ) -> None: ...
    def delete(self, ticket_id: str) -> None: ...
    def close(self) -> None: ...
