"""A ServiceNow table as a desk kind: ``config`` (its settings), ``connector`` (the ``Desk``),
``oauth`` (its credentials), ``push`` (its business rule's pushes)."""

from connectors.desk_kind import DeskKind
from connectors.servicenow import push
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.connector import ServiceNowConnector

KIND = DeskKind(
    config=ServiceNowDeskConfig,
    connector=ServiceNowConnector,
    verify_push=push.verify_push,
    pushed_ticket_ids=push.pushed_ticket_ids,
    push_keys=push.push_keys,
)
