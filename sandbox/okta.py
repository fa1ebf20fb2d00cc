"""An Okta org (Management API and System Log), as a real HTTP server, written from Okta's API
reference and OpenAPI specification (users, lifecycle, factors, roles, sessions, System Log),
its "core Okta API" conventions page (errors, 411, request ids, paging, rate-limit headers) and
its service-app OAuth guide (``sandbox/okta_auth.py``).

What it models, and where from:

- Users (``GET /api/v1/users/{idOrLogin}``; ``GET /api/v1/users?search=…`` with ``limit`` and
  ``Link: <…after=…>; rel="next"`` paging; search includes DEPROVISIONED users, as documented),
  with Okta's statuses and the ``_links`` of the lifecycle operations allowed in the current
  status (``unlock`` only when LOCKED_OUT). Groups, roles (``okta.roles.read``) and factors.
- Actions: ``POST …/lifecycle/unlock`` (LOCKED_OUT only; never for a user whose password lives
  in Active Directory: ``E0000032``), ``…/lifecycle/reset_factors``,
  ``…/lifecycle/reset_password?sendEmail=…[&revokeSessions=…]`` (``sendEmail`` is required in
  the current spec: with ``true`` Okta e-mails the link, recorded in ``/_sandbox/emails``; with
  ``false`` the answer carries a one-time ``resetPasswordUrl``, recorded as handed out),
  ``DELETE …/sessions[?oauthTokens=true]`` (204). Each answers 200 with an empty object.
- Conventions: a POST with no body and no ``Content-Length`` is 411; errors carry ``errorCode``,
  ``errorSummary``, ``errorLink``, ``errorId``, ``errorCauses``; every answer carries
  ``X-Okta-Request-Id``; every ``/api/v1`` answer carries ``X-Rate-Limit-Limit``,
  ``-Remaining`` and ``-Reset`` (epoch seconds) and a 429 ``E0000047`` once a bucket is spent
  (per minute: Okta's published figures, smaller ones set through ``rate_limits``).
- The System Log (``sandbox/okta_log.py``): every action is recorded with the actor Okta would
  name (Deskgate's app, the API token's admin, an admin in the console, the user themselves),
  and becomes visible ``log_delay_seconds`` later.

Strict where the documentation is silent: the status a lifecycle call refuses answers
``E0000038`` (403), resetting the factors of a user with none is refused (``E0000001``).

Its pieces: ``okta_org.py`` (the config, users, buckets, answer shapes), ``okta_auth.py``
(credentials), ``okta_log.py`` (the System Log), ``okta_controls.py`` (the control API).
Control API (beside ``sandbox.common``'s): ``POST /_sandbox/users`` creates a user (``login``,
``email``, ``mobilePhone``, ``status``, ``roles``, ``groups``, ``factors``, ``provider``,
``created`` epoch seconds; logged as ``user.lifecycle.create`` then); ``PATCH
/_sandbox/users/{id}`` changes the profile (logged as ``user.account.update_profile`` with
``changedAttributes``; ``at`` backdates it); ``POST /_sandbox/users/{id}/lock``; ``POST
/_sandbox/console`` plays an admin in the admin console (``{"user", "action"}``: unlock,
reset_password, reset_factors, clear_sessions); ``POST /_sandbox/users/{id}/self_service``
plays the user (``{"action": "reset_password" | "unlock"}``); ``GET /_sandbox/log`` (every
event, persisted or not), ``GET /_sandbox/emails``, ``PUT /_sandbox/settings``
(``log_delay_seconds``, ``rate_limits``), ``POST /_sandbox/reset``.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import quote, urlencode

from flask import Flask, Response, g, jsonify, request

from sandbox import okta_controls
from sandbox.common import CONTROL_PREFIX, Controls
from sandbox.okta_auth import Caller, Issued, caller, insufficient_scope, issue_token
from sandbox.okta_log import LogQueryError, SystemLog
from sandbox.okta_org import (
    KEY_ID,
    PRIVATE_KEY_PEM,
    SCOPES,
    Buckets,
    OktaSimConfig,
    Org,
    admin_actor,
    bucket_of,
    fault_response,
    log_error,
    okta_error,
    set_status,
    user_json,
)
from sandbox.options import Wiring
from sandbox.simulator import Simulator

__all__ = ["KEY_ID", "PRIVATE_KEY_PEM", "SCOPES", "SIMULATOR", "OktaSimConfig", "create_app"]


def create_app(config: OktaSimConfig | None = None) -> Flask:
    config = config or OktaSimConfig()
    app = Flask("sandbox-okta")
    org = Org(config, SystemLog(config.log_delay_seconds), Buckets(dict(config.rate_limits)))
    issued = Issued()
    app.extensions["okta_org"] = org
    Controls("okta", fault_response).install(app)

    def org_url() -> str:
        return request.host_url.rstrip("/")

    @app.before_request
    def _request_id() -> Response | None:
        g.okta_request_id = secrets.token_urlsafe(20)[:27]
        if request.path.startswith(CONTROL_PREFIX) or not request.path.startswith("/api/"):
            return None
        # Okta: "POST/PUT requests without a body must send Content-Length: 0", else 411.
        headers = request.headers
        if (
            request.method in ("POST", "PUT")
            and "Content-Length" not in headers
            and "chunked" not in headers.get("Transfer-Encoding", "")
        ):
            return Response("Length Required", status=411, mimetype="text/plain")
        limit, remaining, reset = org.buckets.take(bucket_of(request.method, request.path))
        g.okta_rate = (limit, max(remaining, 0), reset)
        if remaining < 0:
            return okta_error("E0000047")
        who = caller(issued, config.api_token, SCOPES)
        if who is None:
            return okta_error("E0000011")
        g.okta_caller = who
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["X-Okta-Request-Id"] = g.get("okta_request_id", "")
        rate = g.get("okta_rate")
        if rate is not None:
            resp.headers["X-Rate-Limit-Limit"] = str(rate[0])
            resp.headers["X-Rate-Limit-Remaining"] = str(rate[1])
            resp.headers["X-Rate-Limit-Reset"] = str(rate[2])
        return resp

    def need(scope: str) -> Response | None:
        who: Caller = g.okta_caller
        return None if scope in who.scopes else insufficient_scope(org_url(), scope)

    def actor() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(actor, client, transaction) of the current API call, as the System Log names them."""
        who: Caller = g.okta_caller
        agent = {"rawUserAgent": request.headers.get("User-Agent", ""), "os": None}
        tx: dict[str, Any] = {"type": "WEB", "id": g.okta_request_id, "detail": {}}
        ip = request.remote_addr
        if who.kind == "app":
            app_actor = {
                "id": who.client_id,
                "type": "PublicClientApp",
                "alternateId": who.client_id,
                "displayName": config.app_name,
                "detailEntry": None,
            }
            client = {"id": who.client_id, "userAgent": agent, "ipAddress": ip}
            return app_actor, client, tx
        admin = admin_actor(config.token_admin)
        tx["detail"] = {"requestApiTokenId": "00Tsandboxtoken000001"}
        return admin, {"id": None, "userAgent": agent, "ipAddress": ip}, tx

    def record(event_type: str, user: dict[str, Any], message: str, **debug: Any) -> None:
        who, client, tx = actor()
        org.log.record(
            event_type,
            who,
            client,
            org.target(user),
            message=message,
            request_id=g.okta_request_id,
            transaction=tx,
            debug=debug,
        )

    @app.post("/oauth2/v1/token")
    def token() -> Response:
        return issue_token(
            issued,
            org=org_url(),
            client_id=config.client_id,
            public_jwk=config.jwk,
            granted=config.granted_scopes,
            require_dpop=config.require_dpop,
        )

    # -- reads --------------------------------------------------------------------------

    @app.get("/api/v1/users/<path:id_or_login>")
    def get_user(id_or_login: str) -> Response:
        if (refused := need("okta.users.read")) is not None:
            return refused
        user = org.find(id_or_login)
        if user is None:
            return okta_error("E0000007", id_or_login)
        return jsonify(user_json(org_url(), user))

    @app.get("/api/v1/users")
    def search_users() -> Response:
        if (refused := need("okta.users.read")) is not None:
            return refused
        try:
            conditions = _search(request.args.get("search", ""))
            limit = int(request.args.get("limit", "200"))
        except ValueError as exc:
            return okta_error("E0000001", str(exc))
        if not 1 <= limit <= 200:
            return okta_error("E0000001", "limit must be 1 to 200")
        after = request.args.get("after", "")
        with org.lock:
            found = sorted(
                (u for u in org.users.values() if _matches(u, conditions)), key=lambda u: u["id"]
            )
        found = [u for u in found if u["id"] > after]
        page = found[:limit]
        resp = jsonify([user_json(org_url(), u) for u in page])
        self_url = f"{org_url()}{request.full_path.rstrip('?')}"
        links = [f'<{self_url}>; rel="self"']
        if len(found) > limit:
            query = {k: v for k, v in request.args.items() if k != "after"}
            query["after"] = page[-1]["id"]
            links.append(
                f'<{org_url()}/api/v1/users?{urlencode(query, quote_via=quote)}>; rel="next"'
            )
        resp.headers["Link"] = ", ".join(links)
        return resp

    @app.get("/api/v1/users/<user_id>/roles")
    def roles(user_id: str) -> Response:
        return _listing(user_id, "okta.roles.read", "_roles")

    @app.get("/api/v1/users/<user_id>/groups")
    def groups(user_id: str) -> Response:
        return _listing(user_id, "okta.users.read", "_groups")

    @app.get("/api/v1/users/<user_id>/factors")
    def factors(user_id: str) -> Response:
        return _listing(user_id, "okta.users.read", "_factors")

    def _listing(user_id: str, scope: str, key: str) -> Response:
        if (refused := need(scope)) is not None:
            return refused
        user = org.find(user_id)
        if user is None:
            return okta_error("E0000007", user_id)
        return jsonify(user[key])

    @app.get("/api/v1/logs")
    def logs() -> Response:
        if (refused := need("okta.logs.read")) is not None:
            return refused
        try:
            events, after = org.log.query(dict(request.args.items()))
        except LogQueryError as exc:
            return okta_error("E0000001", str(exc)) if exc.code == "E0000001" else log_error(exc)
        except ValueError:
            return okta_error("E0000001", "since/until must be ISO 8601")
        resp = jsonify(events)
        if after is not None:
            query = {k: v for k, v in request.args.items() if k not in ("after", "since")}
            query["after"] = after
            resp.headers["Link"] = (
                f'<{org_url()}/api/v1/logs?{urlencode(query, quote_via=quote)}>; rel="next"'
            )
        return resp

    # -- actions ------------------------------------------------------------------------

    def acting(user_id: str) -> dict[str, Any] | Response:
        if (refused := need("okta.users.manage")) is not None:
            return refused
        user = org.find(user_id)
        return okta_error("E0000007", user_id) if user is None else user

    @app.post("/api/v1/users/<user_id>/lifecycle/unlock")
    def unlock(user_id: str) -> Response:
        user = acting(user_id)
        if isinstance(user, Response):
            return user
        if user["credentials"]["provider"]["type"] != "OKTA":
            return okta_error("E0000032")  # the lockout lives in the directory
        if user["status"] != "LOCKED_OUT":
            return okta_error("E0000038")
        set_status(user, "ACTIVE")
        record("user.account.unlock_by_admin", user, "Unlock user account by admin")
        return jsonify({})

    @app.post("/api/v1/users/<user_id>/lifecycle/reset_factors")
    def reset_factors(user_id: str) -> Response:
        user = acting(user_id)
        if isinstance(user, Response):
            return user
        if user["status"] in ("DEPROVISIONED", "SUSPENDED", "STAGED", "PROVISIONED"):
            return okta_error("E0000038")
        if not user["_factors"]:
            return okta_error("E0000001", "reset factors", ("The user has no enrolled factors",))
        with org.lock:
            user["_factors"] = []
        record("user.mfa.factor.reset_all", user, "Reset all factors for user")
        return jsonify({})

    @app.post("/api/v1/users/<user_id>/lifecycle/reset_password")
    def reset_password(user_id: str) -> Response:
        user = acting(user_id)
        if isinstance(user, Response):
            return user
        send_email = request.args.get("sendEmail")
        if send_email not in ("true", "false"):
            return okta_error("E0000001", "sendEmail", ("sendEmail: is required",))
        if user["status"] in ("DEPROVISIONED", "SUSPENDED", "STAGED", "PROVISIONED"):
            return okta_error("E0000038")
        revoke = request.args.get("revokeSessions") == "true"
        set_status(user, "RECOVERY")
        record(
            "user.account.reset_password",
            user,
            "Fired when the user's Okta password is reset",
            is_self_initiated="false",
            session_revocation=str(revoke).lower(),
        )
        if revoke:
            record("user.session.clear", user, "Clear user sessions")
        with org.lock:
            org.emails.append(
                {"to": user["profile"]["email"], "user": user["id"], "kind": "reset_password"}
                if send_email == "true"
                else {"to": None, "user": user["id"], "kind": "reset_password_url_returned"}
            )
        if send_email == "true":
            return jsonify({})
        return jsonify(
            {"resetPasswordUrl": f"{org_url()}/reset_password/{secrets.token_urlsafe()}"}
        )

    @app.delete("/api/v1/users/<user_id>/sessions")
    def clear_sessions(user_id: str) -> Response:
        user = acting(user_id)
        if isinstance(user, Response):
            return user
        tokens = request.args.get("oauthTokens") == "true"
        record("user.session.clear", user, "Clear user sessions", revokeOauthTokens=str(tokens))
        return Response(status=204, content_type=None)

    okta_controls.install(app, org)
    return app


def _search(text: str) -> list[tuple[str, str]]:
    """``search`` as far as Deskgate uses it: ``<field> eq "value"`` joined by ``and``."""
    found = []
    for part in re.split(r"\s+and\s+", text.strip()) if text.strip() else []:
        match = re.fullmatch(r'\s*(profile\.\w+|id|status)\s+eq\s+"([^"]*)"\s*', part)
        if match is None:
            raise ValueError(f"search: unsupported expression {part!r}")
        found.append((match.group(1), match.group(2)))
    return found


def _matches(user: dict[str, Any], conditions: list[tuple[str, str]]) -> bool:
    for path, want in conditions:
        value = user["profile"].get(path[8:]) if path.startswith("profile.") else user.get(path)
        # Okta compares strings in a search case-insensitively.
        if not isinstance(value, str) or value.lower() != want.lower():
            return False
    return True


# -- the sandbox's wiring (sandbox/registry.py) ----------------------------------------------


def _app_config(wiring: Wiring) -> OktaSimConfig:
    return OktaSimConfig()


def _config_text(wiring: Wiring) -> str:
    return f"""[idps.acme_okta]
kind = "okta"
base_url = "{wiring.url}"
"""


def _banner(url: str, config: OktaSimConfig) -> str:
    return f"""  Okta sandbox       {url}/api/v1   Authorization: SSWS {config.api_token}
                     OAuth app {config.client_id} (private_key_jwt, ES256)
                     control API {url}{CONTROL_PREFIX}users"""


SIMULATOR = Simulator(
    name="okta",
    create_app=create_app,
    app_config=_app_config,
    config_text=_config_text,
    # An API token: a PEM's lines would not fit the stack's one-line env files. The connector's
    # OAuth mode is tested against this simulator in tests/unit/test_okta_connector.py.
    secrets={"DESKGATE_IDPS__ACME_OKTA__API_TOKEN": OktaSimConfig.api_token},
    dev_port=8106,
    banner=_banner,
)
