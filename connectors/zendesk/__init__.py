"""Zendesk Support as a desk kind: ``config`` (its settings), ``connector`` (the ``Desk``),
``push`` (its webhooks), ``setup`` and ``doctor`` (provisioning and checking the account, from
the definitions in ``objects``)."""

from connectors.desk_kind import DeskKind
from connectors.zendesk import push
from connectors.zendesk.config import ZendeskDeskConfig
from connectors.zendesk.connector import ZendeskConnector
from connectors.zendesk.doctor import doctor
from connectors.zendesk.setup import setup

KIND = DeskKind(
    config=ZendeskDeskConfig,
    connector=ZendeskConnector,
    verify_push=push.verify_push,
    pushed_ticket_ids=push.pushed_ticket_ids,
    push_keys=push.push_keys,
    setup=setup,
    doctor=doctor,
)
