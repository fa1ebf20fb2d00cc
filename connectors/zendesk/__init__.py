"""Zendesk Support as a desk kind: ``config`` (its settings), ``connector`` (the ``Desk``),
``push`` (its webhooks)."""

from connectors.desk_kind import DeskKind
from connectors.zendesk import push
from connectors.zendesk.config import ZendeskDeskConfig
from connectors.zendesk.connector import ZendeskConnector

KIND = DeskKind(
    config=ZendeskDeskConfig,
    connector=ZendeskConnector,
    verify_push=push.verify_push,
    pushed_ticket_ids=push.pushed_ticket_ids,
    push_keys=push.push_keys,
)
