"""``deskgate setup <zendesk desk>``: the webhook and its signing secret, the "Deskgate" trigger
category, the trigger, one macro per trigger reason, and a look at the On-hold status.

Each object is found by its name (``objects.py``), created if missing and updated only where it
differs, so a second run changes nothing. Setup never weakens what an admin hardened: on an
existing trigger it repairs only what Deskgate needs and keeps, and reports, every condition an
admin added (``objects.reconcile_trigger``); the trigger is still written whole on an update, as
Zendesk replaces its conditions and actions together. With ``dry_run`` nothing is written and
the same lines say what would be. The signing secret is read back from the webhook and, when it
is not the configured one, written only where the operator said (``store_secret``); it is never
shown in full.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.http import Fatal, json_body, new_client, request, same_origin
from connectors.provisioning import (
    ROTATE_SECRET,
    Action,
    AdminCredential,
    Change,
    ProvisioningError,
    SetupRequest,
    mask_secret,
)
from connectors.secret_check import matches_any
from connectors.zendesk import objects
from connectors.zendesk.config import ZendeskDeskConfig
from connectors.zendesk.connector import describe_error

SYSTEM = "zendesk"
MAX_PAGES = 100  # of 100 each: far more objects of one kind than an account holds
CURSOR = {"page[size]": "100"}  # cursor pagination, where an endpoint offers it (recommended)
NEW = "(the new webhook)"  # the webhook id a dry run cannot know yet


def client(config: ZendeskDeskConfig, admin: AdminCredential, timeout: float) -> httpx.Client:
    """A Zendesk API client acting as ``admin`` (an API token: ``{email}/token``)."""
    user = admin.user if admin.user.endswith("/token") else f"{admin.user}/token"
    return new_client(
        f"{config.base}/api/v2",
        timeout,
        auth=(user, admin.secret.get_secret_value()),
        headers={"Content-Type": "application/json"},
    )


def call(api: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = request(api, SYSTEM, method, path, describe_error, **kwargs)
    return {} if response.status_code == 204 else json_body(SYSTEM, response)


def listed(
    api: httpx.Client, config: ZendeskDeskConfig, path: str, key: str, **params: str
) -> list[dict[str, Any]]:
    """Every ``key`` item of a Zendesk listing, page after page, as the account pages it: cursor
    pages (``meta.has_more``, ``links.next``) or offset pages (``next_page``), whichever the
    endpoint answers with. A next link is followed only on the account's own origin (it carries
    the admin's credentials), and only for ``MAX_PAGES``."""
    found: list[dict[str, Any]] = []
    url, query = path, params or None
    for _ in range(MAX_PAGES):
        page = call(api, "GET", url, params=query)
        found += page.get(key) or []
        if "meta" in page:
            more = (page.get("meta") or {}).get("has_more")
            next_url = (page.get("links") or {}).get("next") if more else None
        else:
            next_url = page.get("next_page")
        if not next_url:
            return found
        if not same_origin(str(next_url), config.base):
            raise Fatal(SYSTEM, f"Zendesk's next page of {key} points outside the account")
        url, query = str(next_url), None
    raise Fatal(SYSTEM, f"Zendesk's {key} did not end within {MAX_PAGES} pages")


def find_webhooks(api: httpx.Client, config: ZendeskDeskConfig, name: str) -> list[dict[str, Any]]:
    """The account's webhooks named exactly ``name`` (names are not unique on Zendesk)."""
    found = listed(api, config, "/webhooks", "webhooks", **{"filter[name_contains]": name})
    return [w for w in found if w.get("name") == name]


def find_trigger(api: httpx.Client, config: ZendeskDeskConfig, title: str) -> dict[str, Any] | None:
    # The search matches titles loosely and pages by offset only (Zendesk's reference).
    found = listed(api, config, "/triggers/search", "triggers", query=title)
    return next((t for t in found if t.get("title") == title), None)


def find_macro(api: httpx.Client, config: ZendeskDeskConfig, title: str) -> dict[str, Any] | None:
    found = listed(api, config, "/macros/search", "macros", query=title)
    return next((m for m in found if m.get("title") == title), None)


def categories(api: httpx.Client, config: ZendeskDeskConfig) -> list[dict[str, Any]]:
    return listed(api, config, "/trigger_categories", "trigger_categories", **CURSOR)


def hold_enabled(api: httpx.Client) -> bool:
    statuses = call(api, "GET", "/custom_statuses").get("custom_statuses", [])
    return any(s.get("status_category") == "hold" and s.get("active") for s in statuses)


def setup(req: SetupRequest[ZendeskDeskConfig]) -> list[Change]:
    if req.admin is None:
        raise ProvisioningError("setup needs a Zendesk admin (--admin-user, DESKGATE_ADMIN_SECRET)")
    with client(req.config, req.admin, req.timeout) as api:
        return _Setup(req, api).run()


class _Setup:
    def __init__(self, req: SetupRequest[ZendeskDeskConfig], api: httpx.Client) -> None:
        self.req, self.api, self.config = req, api, req.config
        self.changes: list[Change] = []

    def _say(self, kind: str, name: str, action: Action, detail: str = "") -> None:
        self.changes.append(Change(kind, name, action, detail))

    def run(self) -> list[Change]:
        me = call(self.api, "GET", "/users/me")["user"]
        if me.get("role") != "admin":
            raise ProvisioningError(
                f"the credential given is a Zendesk {me.get('role', 'user')}, not an admin: "
                "webhooks and triggers need an admin (Deskgate's own API user should stay an agent)"
            )
        webhook_id = self.webhook()
        self.signing_secret(webhook_id)
        category_id = self.category()
        self.trigger(webhook_id, category_id)
        for tag, reason in self.config.triggers.items():
            self.macro(objects.macro(tag, reason), tag)
        self.action_trigger(webhook_id, category_id)
        for action in objects.desk_actions(self.config):
            self.macro(
                objects.action_macro(self.config, action), objects.action_tag(self.config, action)
            )
        self.gate_status()
        return self.changes

    def webhook(self) -> str:
        wanted = objects.webhook(self.req.desk, self.req.public_url)
        name = wanted["name"]
        found = find_webhooks(self.api, self.config, name)
        if not found:
            if self.req.dry_run:
                self._say("webhook", name, Action.CREATE, f"POST to {wanted['endpoint']}")
                return NEW
            made = call(self.api, "POST", "/webhooks", json={"webhook": wanted})["webhook"]
            self._say("webhook", name, Action.CREATE, f"{made['id']}: POST {wanted['endpoint']}")
            return str(made["id"])
        # Several with our name: keep the one already pointing here, say so.
        current = next((w for w in found if w.get("endpoint") == wanted["endpoint"]), found[0])
        extra = f"; {len(found) - 1} more named so (delete them)" if len(found) > 1 else ""
        if current.get("subscriptions") != wanted["subscriptions"]:
            raise ProvisioningError(
                f"webhook {current['id']} ({name}) is not connected to triggers and Zendesk "
                "cannot change that: delete it and run setup again"
            )
        keys = ("status", "endpoint", "http_method", "request_format")
        differs = {k: wanted[k] for k in keys if current.get(k) != wanted[k]}
        if not differs:
            self._say("webhook", name, Action.UNCHANGED, f"{current['id']}{extra}")
        else:
            if not self.req.dry_run:
                # 204 and no body: nothing to read back but the next run's "unchanged".
                call(self.api, "PATCH", f"/webhooks/{current['id']}", json={"webhook": differs})
            fields = ", ".join(f"{k} -> {v}" for k, v in differs.items())
            self._say("webhook", name, Action.UPDATE, f"{current['id']}: {fields}{extra}")
        return str(current["id"])

    def signing_secret(self, webhook_id: str) -> None:
        env = objects.secret_env(self.req.desk)
        if webhook_id == NEW:
            self._say("signing secret", env, Action.WRITE, "read from the new webhook and stored")
            return
        path = f"/webhooks/{webhook_id}/signing_secret"
        rotate = self.req.options.get(ROTATE_SECRET) == "1"
        if rotate and self.req.dry_run:
            self._say("signing secret", env, Action.WRITE, "would be reset and stored")
            return
        body = call(self.api, "POST" if rotate else "GET", path)
        secret = str(body["signing_secret"]["secret"])
        configured = self.config.webhook_secret
        if configured is not None and matches_any(secret, [configured.get_secret_value()]):
            self._say("signing secret", env, Action.UNCHANGED, "the configured one")
            return
        masked = mask_secret(secret)
        why = "reset" if rotate else "not the configured one" if configured else "not configured"
        if self.req.store_secret is None:
            self._say(
                "signing secret",
                env,
                Action.MANUAL,
                f"{why}: set {env} to the webhook's secret ({masked}); run again with "
                "--secret-file or --env-file to have setup write it",
            )
        elif self.req.dry_run:
            self._say("signing secret", env, Action.WRITE, f"{why}: would store {masked}")
        else:
            where = self.req.store_secret(env, secret)
            self._say(
                "signing secret",
                env,
                Action.WRITE,
                f"{why}: stored {masked} in {where}; restart web to use it",
            )

    def category(self) -> str:
        found = categories(self.api, self.config)
        current = next((c for c in found if c.get("name") == objects.CATEGORY), None)
        if current is not None:
            self._say("trigger category", objects.CATEGORY, Action.UNCHANGED, str(current["id"]))
            return str(current["id"])
        if self.req.dry_run:
            self._say("trigger category", objects.CATEGORY, Action.CREATE)
            return "(the new category)"
        wanted = {"name": objects.CATEGORY, "position": len(found)}
        made = call(self.api, "POST", "/trigger_categories", json={"trigger_category": wanted})
        category_id = str(made["trigger_category"]["id"])
        self._say("trigger category", objects.CATEGORY, Action.CREATE, category_id)
        return category_id

    def trigger(self, webhook_id: str, category_id: str) -> None:
        wanted = objects.trigger(self.req.desk, self.config, webhook_id, category_id)
        title = wanted["title"]
        current = find_trigger(self.api, self.config, title)
        if current is None:
            if not self.req.dry_run:
                made = call(self.api, "POST", "/triggers", json={"trigger": wanted})["trigger"]
                title_id = f"{made['id']}: "
            else:
                title_id = ""
            self._say("trigger", title, Action.CREATE, f"{title_id}{_summary(self.config)}")
            return
        # Repair what Deskgate needs; keep (and say) what an admin added to narrow it.
        repaired, kept, dropped = objects.reconcile_trigger(current, self.config, webhook_id)
        notes = [f"kept the admin's stricter {'; '.join(kept)}"] if kept else []
        notes += [f"removed {'; '.join(dropped)} (would undo the flag or the gate)"] * bool(dropped)
        if objects.same_trigger(current, repaired):
            self._say("trigger", title, Action.UNCHANGED, "; ".join([str(current["id"]), *notes]))
            return
        why = objects.trigger_problems(current, self.config, webhook_id)
        detail = "; ".join(why.values()) or "its definition differs from Deskgate's"
        if not self.req.dry_run:
            # Conditions and actions together: Zendesk empties whichever is left out.
            call(self.api, "PUT", f"/triggers/{current['id']}", json={"trigger": repaired})
        self._say(
            "trigger", title, Action.UPDATE, "; ".join([f"{current['id']}: {detail}", *notes])
        )

    def action_trigger(self, webhook_id: str, category_id: str) -> None:
        """The action-request trigger, as ``trigger`` handles the flag's: created if missing,
        repaired where it differs, an admin's narrowing kept and reported."""
        wanted = objects.action_trigger(self.req.desk, self.config, webhook_id, category_id)
        title = wanted["title"]
        current = find_trigger(self.api, self.config, title)
        if current is None:
            made = "" if self.req.dry_run else self._create_trigger(wanted)
            tags = " or ".join(objects.action_tags(self.config))
            self._say("trigger", title, Action.CREATE, f"{made}tags {tags}, once per request")
            return
        repaired, kept, dropped = objects.reconcile_action_trigger(current, self.config, webhook_id)
        notes = [f"kept the admin's stricter {'; '.join(kept)}"] if kept else []
        notes += [f"removed {'; '.join(dropped)} (would undo the request)"] * bool(dropped)
        if objects.same_trigger(current, repaired):
            self._say("trigger", title, Action.UNCHANGED, "; ".join([str(current["id"]), *notes]))
            return
        why = objects.action_trigger_problems(current, self.config, webhook_id)
        detail = "; ".join(why.values()) or "its definition differs from Deskgate's"
        if not self.req.dry_run:
            call(self.api, "PUT", f"/triggers/{current['id']}", json={"trigger": repaired})
        self._say(
            "trigger", title, Action.UPDATE, "; ".join([f"{current['id']}: {detail}", *notes])
        )

    def _create_trigger(self, wanted: dict[str, Any]) -> str:
        made = call(self.api, "POST", "/triggers", json={"trigger": wanted})["trigger"]
        return f"{made['id']}: "

    def macro(self, wanted: dict[str, Any], tag: str) -> None:
        """One macro adding ``tag`` (a flag's or an action request's)."""
        title = wanted["title"]
        current = find_macro(self.api, self.config, title)
        if current is None:
            if not self.req.dry_run:
                call(self.api, "POST", "/macros", json={"macro": wanted})
            self._say("macro", title, Action.CREATE, f"adds the tag {tag}")
            return
        repaired, kept, dropped = objects.reconcile_macro(current, tag, title)
        notes = [f"kept the admin's {'; '.join(kept)}"] if kept else []
        notes += [f"removed {'; '.join(dropped)} (would undo the flag)"] * bool(dropped)
        if objects.same_macro(current, repaired):
            self._say("macro", title, Action.UNCHANGED, "; ".join([str(current["id"]), *notes]))
            return
        if not self.req.dry_run:
            call(self.api, "PUT", f"/macros/{current['id']}", json={"macro": repaired})
        detail = "; ".join([f"{current['id']}: adds the tag {tag}", *notes])
        self._say("macro", title, Action.UPDATE, detail)

    def gate_status(self) -> None:
        uses_hold = "hold" in (self.config.gate_status, self.config.release_status)
        if not uses_hold:
            self._say("status", self.config.gate_status, Action.UNCHANGED, "a built-in status")
        elif hold_enabled(self.api):
            self._say("status", "On-hold", Action.UNCHANGED, "enabled")
        else:
            self._say("status", "On-hold", Action.MANUAL, HOLD_FIX)


HOLD_FIX = (
    "On-hold is not enabled: enable it (Admin Center > Objects and rules > Tickets > Fields > "
    'Status) or set gate_status = "pending" for this desk'
)


def _summary(config: ZendeskDeskConfig) -> str:
    markers = " ".join(objects.open_markers(config))
    return f"tags {' or '.join(sorted(config.triggers))}, none of {markers}, status < solved"
