"""Inbound endpoints. Each follows one order: read the raw bytes, authenticate in constant time
(and check the timestamp window where the sender signs one), parse, then dedupe and enqueue ids in
one atomic step, answer 2xx. Refusals are 4xx with a reason; nothing is enqueued for them. A
replay answers 200 ``{"status": "duplicate"}`` and enqueues nothing; a failed enqueue (503) takes
no dedupe key, so the sender's retry is accepted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from flask import Blueprint, abort, current_app, jsonify, request
from pydantic import SecretStr

from config.settings import Settings
from connectors.incode import webhook as incode
from connectors.registry import KINDS
from connectors.ticketing import PushAuth
from webhooks import oauth
from webhooks.metrics import mark
from worker.dispatch import CHECK_RESULT, POLL_DESK, START_VERIFICATION, RedisDispatcher
from worker.lifecycle.store import Store

log = structlog.get_logger("deskgate.webhooks")
inbound = Blueprint("inbound", __name__)

DEDUPE_SECONDS = 86400  # Incode retries for about 32 minutes; a day is plenty
RECOVER_POLL_SECONDS = 30


@dataclass(frozen=True)
class Inbound:
    current: Callable[[], Settings]  # re-read per request: secrets rotate without a restart
    store: Store
    dispatcher: RedisDispatcher

    @property
    def settings(self) -> Settings:
        return self.current()


def _ctx() -> Inbound:
    ctx: Inbound = current_app.extensions["deskgate"]
    return ctx


def _secrets(*values: SecretStr | None) -> list[str]:
    return [v.get_secret_value() for v in values if v is not None]


def _duplicate() -> Any:
    mark("duplicate")
    return jsonify({"status": "duplicate"})


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: not a 500
        abort(400, "body is not valid JSON")
    if not isinstance(payload, dict):
        abort(400, "body must be a JSON object")
    return payload


@inbound.post("/webhooks/<kind>")
def ticketing_push(kind: str) -> Any:
    """A push matched to the desk of ``kind`` whose secret verifies it."""
    return _push(kind, None)


@inbound.post("/webhooks/<kind>/<desk>")
def desk_push(kind: str, desk: str) -> Any:
    """A push to one desk's own endpoint, verified with that desk's secrets only: desks that
    share a sender (two ServiceNow tables on one instance) cannot push as each other."""
    cfg = _ctx().settings.desks.get(desk)
    if cfg is None or cfg.kind != kind:
        abort(404, f"no {kind} desk named {desk!r}")
    return _push(kind, desk)


def _push(kind: str, only: str | None) -> Any:
    ctx = _ctx()
    settings = ctx.settings  # once: a reload between two reads would mix two configurations
    desk_kind = KINDS.get(kind)
    if desk_kind is None:
        abort(404, f"no webhook endpoint for {kind!r}")
    raw = request.get_data(cache=False)
    push = PushAuth(
        headers=request.headers,  # read by name, not copied (connectors.ticketing.HeaderLookup)
        body=raw,
        now=time.time(),
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )
    desk = next(
        (
            name
            for name, cfg in settings.desks.items()
            if cfg.kind == kind
            and only in (None, name)
            and desk_kind.verify_push(
                push, _secrets(cfg.webhook_secret, cfg.webhook_previous_secret)
            )
        ),
        None,
    )
    if desk is None:
        log.warning("push refused: bad signature", kind=kind, desk=only)
        abort(401, "signature missing, invalid, or outside the timestamp window")
    payload = _json_object(raw)
    try:
        ticket_ids = desk_kind.pushed_ticket_ids(payload)
    except ValueError as exc:
        abort(400, str(exc))
    tolerance = settings.webhook_tolerance_seconds
    keys, ttl = desk_kind.push_keys(desk, request.headers, raw, payload, tolerance)
    tasks = [(START_VERIFICATION, [desk, ticket_id, "push"]) for ticket_id in ticket_ids]
    seen = [ctx.store.seen_key("push", key) for key, _ in keys]
    if not ctx.dispatcher.send_once(tasks, seen, ttl, [limit for _, limit in keys]):
        log.info("push duplicate", desk=desk, tickets=ticket_ids)
        return _duplicate()
    log.debug("push accepted", desk=desk, tickets=ticket_ids)  # DEBUG, as for Incode's below
    return jsonify({"status": "accepted", "desk": desk, "tickets": ticket_ids})


@inbound.post("/webhooks/incode")
def incode_webhook() -> Any:
    ctx = _ctx()
    settings = ctx.settings  # once, as above
    config = settings.incode
    raw = request.get_data(cache=False)
    headers = request.headers  # read by name, not copied (connectors.ticketing.HeaderLookup)
    secrets = _secrets(config.webhook_secret, config.webhook_previous_secret)
    # The static header always works, so switching Incode to OAuth mode needs no flag day.
    if not (
        incode.authentic(headers, config.webhook_secret_header, secrets)
        or (config.webhook_oauth and oauth.bearer_valid(oauth.bearer_of(headers), config))
    ):
        log.warning("incode webhook refused: no valid secret header or bearer token")
        accepted = f"header {config.webhook_secret_header}"
        if config.webhook_oauth:
            accepted += " or a bearer token from /webhooks/incode/token"
        abort(401, f"{accepted} missing or wrong")
    payload = _json_object(raw)
    interview_id, event = incode.interview_of(payload), incode.event_of(payload)
    if not interview_id:
        abort(400, "body carries no interviewId")
    if event not in incode.RESULT_EVENTS:
        log.info("incode event ignored", incode_event=event, session=interview_id)
        mark("ignored")
        return jsonify({"status": "ignored", "event": event})
    # Two round trips: the session's verification (a Lua read), then the delivery's dedupe key
    # and the enqueue, one atomic Lua step.
    vid = ctx.store.session(interview_id)
    if vid is None:
        # 2xx so Incode stops retrying. If Redis lost the mapping, the gated ticket still holds
        # it: scan the desks' gated tickets now (at most every half minute) so the worker
        # recovers it and asks Incode for the result itself.
        log.warning(
            "incode webhook for an unknown session", session=interview_id, incode_event=event
        )
        polls = [(POLL_DESK, [desk, True]) for desk in settings.desks]
        recover = ctx.store.seen_key("recover", "desks")
        ctx.dispatcher.send_once(polls, [recover], RECOVER_POLL_SECONDS)
        mark("unknown_session")
        return jsonify({"status": "unknown_session"})
    seen = ctx.store.seen_key("incode", f"{interview_id}:{event}")
    if not ctx.dispatcher.send_once([(CHECK_RESULT, [vid, event, None])], [seen], DEDUPE_SECONDS):
        log.info("incode webhook duplicate", session=interview_id, incode_event=event)
        return _duplicate()
    # Accepted requests log at DEBUG (a line each was ~5% of the app's CPU under load); refusals,
    # ignored events, unknown sessions and duplicates keep their levels.
    log.debug("incode webhook accepted", session=interview_id, incode_event=event, verification=vid)
    return jsonify({"status": "accepted"})
