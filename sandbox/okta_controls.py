"""The Okta simulator's control API: people acting on the org (creating users, changing a
profile, locking a user; an admin in the admin console; the user in self-service), each action
recorded in the System Log as Okta records it, and the tests' views and knobs."""

from __future__ import annotations

import secrets
import time
from typing import Any

from flask import Flask, Response, jsonify, request

from sandbox.common import CONTROL_PREFIX
from sandbox.okta_log import iso
from sandbox.okta_org import (
    BROWSER,
    Org,
    admin_actor,
    factor,
    new_id,
    okta_error,
    set_status,
    user_json,
)


def install(app: Flask, org: Org) -> None:
    """The control API (the module's docstring lists it)."""
    config = org.config

    def people_record(
        event_type: str, user: dict[str, Any], who: dict[str, Any], message: str, **more: Any
    ) -> None:
        agent = {"rawUserAgent": BROWSER, "os": "Mac OS X", "browser": "SAFARI"}
        at = more.pop("at", None)
        org.log.record(
            event_type,
            who,
            {"id": None, "userAgent": agent, "ipAddress": "203.0.113.7"},
            org.target(user),
            message=message,
            request_id=secrets.token_urlsafe(20)[:27],
            transaction={"type": "WEB", "id": secrets.token_urlsafe(12), "detail": {}},
            debug=more,
            at=at,
        )

    def self_actor(user: dict[str, Any]) -> dict[str, Any]:
        return {**org.target(user), "type": "User"}

    @app.post(f"{CONTROL_PREFIX}users")
    def create_user() -> Response:
        body = request.get_json(force=True)
        created = float(body.get("created", time.time()))
        login = body["login"]
        profile = {
            "login": login,
            "email": body.get("email", login),
            "firstName": body.get("firstName", login.split("@")[0].split(".")[0].title()),
            "lastName": body.get("lastName", "Employee"),
            "mobilePhone": body.get("mobilePhone"),
            "secondEmail": None,
        }
        provider = body.get("provider", "OKTA")
        user = {
            "id": new_id("00u"),
            "status": body.get("status", "ACTIVE"),
            "created": iso(created),
            "activated": iso(created),
            "statusChanged": iso(created),
            "lastLogin": None,
            "lastUpdated": iso(created),
            "passwordChanged": iso(created),
            "type": {"id": "oty" + "sandboxdefault0001"},
            "profile": profile,
            "credentials": {
                "password": {},
                "provider": {
                    "type": provider,
                    "name": "OKTA" if provider == "OKTA" else "acme.test",
                },
            },
            "_roles": [
                {
                    "id": new_id("ra1"),
                    "label": role.replace("_", " ").title(),
                    "type": role,
                    "status": "ACTIVE",
                    "created": iso(created),
                    "lastUpdated": iso(created),
                    "assignmentType": "USER",
                }
                for role in body.get("roles", [])
            ],
            "_groups": [
                {
                    "id": new_id("00g"),
                    "created": iso(created),
                    "lastUpdated": iso(created),
                    "lastMembershipUpdated": iso(created),
                    "objectClass": ["okta:user_group"],
                    "type": "OKTA_GROUP",
                    "profile": {"name": name, "description": None},
                }
                for name in ["Everyone", *body.get("groups", [])]
            ],
            "_factors": [factor(kind, created) for kind in body.get("factors", ["push"])],
        }
        with org.lock:
            org.users[user["id"]] = user
        people_record(
            "user.lifecycle.create", user, admin_actor(config.console_admin), "Create okta user",
            at=created,
        )  # fmt: skip
        return jsonify(user_json(request.host_url.rstrip("/"), user))

    @app.patch(f"{CONTROL_PREFIX}users/<user_id>")
    def change_profile(user_id: str) -> Response:
        user = org.find(user_id)
        if user is None:
            return okta_error("E0000007", user_id)
        body = request.get_json(force=True)
        at = float(body.pop("at", time.time()))
        with org.lock:
            user["profile"].update(body)
            user["lastUpdated"] = iso(at)
        people_record(
            "user.account.update_profile", user, admin_actor(config.console_admin),
            "Update user profile for Okta", changedAttributes=",".join(body), at=at,
        )  # fmt: skip
        return jsonify(user_json(request.host_url.rstrip("/"), user))

    @app.post(f"{CONTROL_PREFIX}users/<user_id>/lock")
    def lock(user_id: str) -> Response:
        user = org.find(user_id)
        if user is None:
            return okta_error("E0000007", user_id)
        set_status(user, "LOCKED_OUT")
        people_record("user.account.lock", user, self_actor(user), "Max sign in attempts exceeded")
        return jsonify({"status": user["status"]})

    @app.post(f"{CONTROL_PREFIX}console")
    def console() -> Response:
        body = request.get_json(force=True)
        user = org.find(body["user"])
        if user is None:
            return okta_error("E0000007", body["user"])
        admin = admin_actor(body.get("admin", config.console_admin))
        action = body["action"]
        if action == "unlock":
            set_status(user, "ACTIVE")
            people_record("user.account.unlock_by_admin", user, admin, "Unlock user account")
        elif action == "reset_password":
            set_status(user, "RECOVERY")
            people_record(
                "user.account.reset_password", user, admin, "Reset password",
                is_self_initiated="false",
            )  # fmt: skip
        elif action == "reset_factors":
            user["_factors"] = []
            people_record("user.mfa.factor.reset_all", user, admin, "Reset all factors for user")
        elif action == "clear_sessions":
            people_record("user.session.clear", user, admin, "Clear user sessions")
        else:
            return okta_error("E0000001", f"unknown console action {action}")
        return jsonify({"done": action})

    @app.post(f"{CONTROL_PREFIX}users/<user_id>/self_service")
    def self_service(user_id: str) -> Response:
        user = org.find(user_id)
        if user is None:
            return okta_error("E0000007", user_id)
        action = request.get_json(force=True)["action"]
        if action == "reset_password":
            people_record(
                "user.account.reset_password", user, self_actor(user), "Self-service reset",
                is_self_initiated="true",
            )  # fmt: skip
        elif action == "unlock":
            set_status(user, "ACTIVE")
            people_record("user.account.unlock", user, self_actor(user), "User account unlocked")
        else:
            return okta_error("E0000001", f"unknown self-service action {action}")
        return jsonify({"done": action})

    @app.get(f"{CONTROL_PREFIX}log")
    def all_events() -> Response:
        return jsonify({"events": org.log.everything()})

    @app.get(f"{CONTROL_PREFIX}emails")
    def emails() -> Response:
        with org.lock:
            return jsonify({"emails": list(org.emails)})

    @app.put(f"{CONTROL_PREFIX}settings")
    def settings() -> Response:
        body = request.get_json(force=True)
        if "log_delay_seconds" in body:
            org.log.delay = float(body["log_delay_seconds"])
        if "rate_limits" in body:
            with org.buckets.lock:
                org.buckets.limits.update({k: int(v) for k, v in body["rate_limits"].items()})
                org.buckets.used.clear()
        return jsonify({"ok": True})

    @app.post(f"{CONTROL_PREFIX}reset")
    def reset() -> Response:
        with org.lock:
            org.users.clear()
            org.emails.clear()
        with org.log.lock:
            org.log.events.clear()
        org.log.delay = config.log_delay_seconds
        with org.buckets.lock:
            org.buckets.limits = dict(config.rate_limits)
            org.buckets.used.clear()
        return jsonify({"ok": True})
