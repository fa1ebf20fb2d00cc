"""The Entra ID simulator's control API (``/_sandbox/...``, listed in ``sandbox/entra.py``'s
docstring): people acting on the tenant outside Deskgate (an admin in the portal, HR
provisioning, the user's own self-service), each logged as Entra logs it, and the knobs tests
turn (permissions, certificates, throttle budgets, the audit log's delay)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request

from sandbox.common import CONTROL_PREFIX
from sandbox.entra_directory import (
    AUDIT_PROPERTY,
    METHOD_TYPES,
    Actor,
    Directory,
    GraphError,
    User,
    new_id,
    new_method,
)
from sandbox.entra_throttle import Throttle
from sandbox.entra_token import App, Tokens

# Who changes a profile when no admin is named: HR-driven provisioning, an app of the tenant.
HR_PROVISIONING = Actor("f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b", "HR provisioning", new_id())


def described(user: User) -> dict[str, Any]:
    """A user as the control API answers it: the Graph resource plus what Graph does not show."""
    return {
        **user.resource(),
        "methods": [m.resource() for m in user.methods],
        "default_method": user.default_method,
        "roles": user.roles,
        "groups": user.groups,
    }


def install(
    app: Flask, directory: Directory, tokens: Tokens, throttle: Throttle, user_age_days: float
) -> None:
    def find(key: str) -> User:
        user = directory.find(key)
        if user is None:
            raise GraphError(404, "Request_ResourceNotFound", f"no user {key[:60]!r}")
        return user

    def admin(body: dict[str, Any]) -> Actor:
        return Actor(user=find(str(body["admin"]))) if body.get("admin") else HR_PROVISIONING

    @app.post(f"{CONTROL_PREFIX}users")
    def create_user() -> Response:
        return jsonify(described(directory.add(request.get_json(force=True), user_age_days)))

    @app.route(f"{CONTROL_PREFIX}users/<key>", methods=["GET", "PATCH"])
    def control_user(key: str) -> Response:
        user = find(key)
        if request.method == "PATCH":
            body: dict[str, Any] = request.get_json(force=True)
            changed: list[tuple[str, Any, Any]] = []
            with directory.lock:
                for prop, attr in (("mail", "mail"), ("mobilePhone", "mobile"),
                                   ("userPrincipalName", "upn")):  # fmt: skip
                    old, new = getattr(user, attr), body.get(prop, getattr(user, attr))
                    if new != old:
                        setattr(user, attr, new)
                        changed.append((AUDIT_PROPERTY[prop], [old] if old else [],
                                        [new] if new else []))  # fmt: skip
                if bool(body.get("accountEnabled", user.enabled)) != user.enabled:
                    user.enabled = not user.enabled
                    changed.append(("AccountEnabled", [not user.enabled], [user.enabled]))
            if changed:
                directory.log(admin(body), "Update user", "Core Directory", user, changed=changed)
        return jsonify(described(user))

    @app.post(f"{CONTROL_PREFIX}portal")
    def portal() -> Response:
        body = request.get_json(force=True)
        actor, user, action = admin(body), find(str(body["user"])), body["action"]
        if action == "delete_method":
            method = user.method(str(body["method"]))
            if method is None:
                raise GraphError(404, "itemNotFound", "The requested method was not found.")
            directory.remove_method(user, method.type, method.id, actor)
        elif action == "create_tap":  # one TAP per user: a new one replaces the old
            tap = new_method({"type": "temporaryAccessPass", "lifetimeInMinutes": 60,
                              "isUsableOnce": True, "temporaryAccessPass": None})  # fmt: skip
            with directory.lock:
                user.methods = [m for m in user.methods if m.type != "temporaryAccessPass"]
                user.methods.append(tap)
            reason = "Admin registered temporary access pass method for user"
            directory.log(actor, "Admin registered security info", "Authentication Methods",
                          user, reason=reason)  # fmt: skip
        elif action == "reset_password":
            directory.log(actor, "Reset user password", "Core Directory", user)
        else:
            raise GraphError(400, "badRequest", f"unknown portal action {str(action)[:40]!r}")
        return jsonify(described(user))

    @app.post(f"{CONTROL_PREFIX}self_service")
    def self_service() -> Response:
        body = request.get_json(force=True)
        user, action = find(str(body["user"])), body["action"]
        if action == "reset_password":
            directory.log(Actor(user=user), "Reset password (self-service)",
                          "Self-service Password Management", user)  # fmt: skip
        elif action == "register_method":
            method = new_method(dict(body["method"]))
            with directory.lock:
                user.methods.append(method)
            directory.log(Actor(user=user), "User registered security info",
                          "Authentication Methods", user,
                          reason=f"User registered {METHOD_TYPES[method.type]} method")  # fmt: skip
        else:
            raise GraphError(400, "badRequest", f"unknown action {str(action)[:40]!r}")
        return jsonify(described(user))

    @app.get(f"{CONTROL_PREFIX}audits")
    def all_audits() -> Response:
        with directory.lock:
            rows = [{"visible_at": at, **entry} for at, entry in directory.audits]
        return jsonify({"audits": rows})

    @app.put(f"{CONTROL_PREFIX}apps/<client_id>")
    def set_app(client_id: str) -> Response:
        body = request.get_json(force=True)
        registered = tokens.apps.setdefault(
            client_id, App(client_id, str(body.get("name", client_id)), body.get("secret"),
                           frozenset())
        )  # fmt: skip
        if "permissions" in body:
            registered.permissions = frozenset(body["permissions"])
        if "certificates" in body:
            registered.certificates = {k.lower(): v for k, v in body["certificates"].items()}
        return jsonify({"client_id": client_id, "permissions": sorted(registered.permissions)})

    @app.put(f"{CONTROL_PREFIX}throttle")
    def set_throttle() -> Response:
        body = request.get_json(force=True)
        budget = body.get("requests")
        with throttle.lock:
            throttle.budgets[str(body["bucket"])] = (
                None if budget is None else (int(budget), float(body["per_seconds"]))
            )
            throttle.seen.clear()
        return jsonify({"budgets": throttle.budgets})

    @app.put(f"{CONTROL_PREFIX}audit_delay")
    def set_audit_delay() -> Response:
        directory.audit_delay = float(request.get_json(force=True)["seconds"])
        return jsonify({"seconds": directory.audit_delay})

    @app.post(f"{CONTROL_PREFIX}reset")
    def reset() -> Response:
        with directory.lock:
            directory.users.clear()
            directory.audits.clear()
        return jsonify({"ok": True})
