"""A ServiceNow table as a desk kind: ``config`` (its settings), ``connector`` (the ``Desk``),
``oauth`` (its credentials), ``push`` (its business rule's pushes), ``records`` (what the desk
needs on the instance: ``business_rule.js``, ``ui_action.js`` and the rest), ``update_set``,
``setup`` and ``doctor``."""

from connectors.desk_kind import DeskKind
from connectors.servicenow import push
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.doctor import doctor
from connectors.servicenow.setup import setup

KIND = DeskKind(
    config=ServiceNowDeskConfig,
    connector=ServiceNowConnector,
    verify_push=push.verify_push,
    pushed_ticket_ids=push.pushed_ticket_ids,
    push_keys=push.push_keys,
    setup=setup,
    doctor=doctor,
)
