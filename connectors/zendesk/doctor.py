"""``deskgate doctor``'s Zendesk checks: is the desk set up as ``deskgate setup`` sets it up?

Everything Deskgate does daily is checked with its own API user (the credentials it runs with);
the webhook and its signing secret can only be read by an admin, so those checks need
``DoctorRequest.admin`` and say so when it is missing. Each failure names its fix.
"""

from __future__ import annotations

from typing import Any

import httpx

from config.privacy import display_url, mask_email
from connectors.http import ApiError, AuthFailed, new_client
from connectors.provisioning import AdminCredential, Check, DoctorRequest, Status, mask_secret
from connectors.secret_check import matches_any
from connectors.zendesk import objects, self_flag, setup
from connectors.zendesk.config import ZendeskDeskConfig

RERUN = "run `deskgate setup {desk}`"


class _Doctor:
    def __init__(self, req: DoctorRequest[ZendeskDeskConfig]) -> None:
        self.req, self.config = req, req.config
        self.system = f"zendesk:{req.desk}"
        self.rerun = RERUN.format(desk=req.desk)
        self.checks: list[Check] = []

    def _check(self, name: str, ok: bool, detail: str = "", fix: str = "") -> bool:
        status = Status.OK if ok else Status.FAIL
        self.checks.append(Check(self.system, name, status, detail, "" if ok else fix))
        return ok

    def _warn(self, name: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(self.system, name, Status.WARN, detail, fix))

    def run(self) -> list[Check]:
        config = self.config
        with new_client(
            f"{config.base}/api/v2",
            self.req.timeout,
            auth=(f"{config.email}/token", config.api_token.get_secret_value()),
        ) as api:
            if not self.credentials(api):
                return self.checks
            self.gate_status(api)
            webhook_id = self.webhook()
            self.trigger(api, webhook_id)
            self.macros(api)
            self.action_trigger(api, webhook_id)
            self.self_flagging(api)
        return self.checks

    def credentials(self, api: httpx.Client) -> bool:
        email = mask_email(self.config.email)  # a person may be behind it: never printed whole
        try:
            me = setup.call(api, "GET", "/users/me")["user"]
        except AuthFailed:
            return self._check(
                "credentials",
                False,
                f"Zendesk refused {email}'s API token",
                f"check email and DESKGATE_DESKS__{self.req.desk.upper()}"
                "__API_TOKEN (Admin Center > Apps and integrations > Zendesk API)",
            )
        self._check("credentials", True, f"{email} ({me.get('role')})")
        restriction = me.get("ticket_restriction")
        may_edit = me.get("role") in ("agent", "admin") and restriction is None
        return self._check(
            "API user may edit the desk's tickets",
            may_edit,
            f"role {me.get('role')}, ticket access {restriction or 'all tickets'}",
            f"give {email} a role with access to all tickets (Admin Center > People > Team "
            "members > role and ticket access), or Deskgate's gate and outcome writes are "
            "refused",
        )

    def gate_status(self, api: httpx.Client) -> None:
        if "hold" not in (self.config.gate_status, self.config.release_status):
            self._check("gate status", True, f"{self.config.gate_status} (built in)")
            return
        self._check("gate status", setup.hold_enabled(api), "On-hold", setup.HOLD_FIX)

    def webhook(self) -> str | None:
        """The webhook's id when it is right (None when it is wrong or cannot be read)."""
        admin: AdminCredential | None = self.req.admin
        public_url = self.req.public_url
        if admin is None:
            self._warn(
                "webhook",
                "not checked: only an admin may read webhooks",
                f"run `deskgate doctor --desk {self.req.desk}` with a Zendesk admin in "
                "DESKGATE_ADMIN_USER and DESKGATE_ADMIN_SECRET",
            )
            return None
        name = objects.webhook_name(self.req.desk)
        try:
            with setup.client(self.config, admin, self.req.timeout) as api:
                found = setup.find_webhooks(api, self.config, name)
                if not self._check(
                    "webhook exists", bool(found), name, f"{self.rerun}: it creates the webhook"
                ):
                    return None
                wanted = objects.webhook(self.req.desk, public_url or "")
                current = next(
                    (w for w in found if w.get("endpoint") == wanted["endpoint"]), found[0]
                )
                secret = setup.call(api, "GET", f"/webhooks/{current['id']}/signing_secret")
        except AuthFailed:
            self._check(
                "webhook exists",
                False,
                f"Zendesk refused the admin {mask_email(admin.user.removesuffix('/token'))}",
                "set DESKGATE_ADMIN_USER and DESKGATE_ADMIN_SECRET to a Zendesk admin's e-mail "
                "and an active API token",
            )
            return None
        ok = self._webhook_fields(current, wanted)
        value = str(secret["signing_secret"]["secret"])
        configured = self.config.webhook_secret
        env = objects.secret_env(self.req.desk)
        same = configured is not None and matches_any(value, [configured.get_secret_value()])
        self._check(
            "signing secret is the configured one",
            same,
            f"{env} vs the webhook's {mask_secret(value)}",
            f"{self.rerun} --env-file (or --secret-file) to store the webhook's "
            "secret, then restart web: pushes signed with it are refused (401) until "
            "then",
        )
        return str(current["id"]) if ok else None

    def _webhook_fields(self, current: dict[str, Any], wanted: dict[str, Any]) -> bool:
        if self.req.public_url is None:
            self._warn(
                "webhook points at public_url",
                "public_url is not set",
                "set public_url (DESKGATE_PUBLIC_URL) to where desks reach Deskgate",
            )
            endpoint_ok = True
        else:
            endpoint_ok = self._check(
                "webhook points at public_url",
                current.get("endpoint") == wanted["endpoint"],
                f"{current.get('endpoint')} (wanted {wanted['endpoint']})",
                f"{self.rerun}: it points the webhook at {wanted['endpoint']}",
            )
        active = self._check(
            "webhook is active",
            current.get("status") == "active"
            and current.get("http_method") == "POST"
            and current.get("request_format") == "json",
            " ".join(str(current.get(k)) for k in ("status", "http_method", "request_format")),
            f"{self.rerun}: it activates the webhook (POST, JSON)",
        )
        return endpoint_ok and active

    def trigger(self, api: httpx.Client, webhook_id: str | None) -> None:
        title = objects.trigger_title(self.req.desk)
        found = setup.find_trigger(api, self.config, title)
        if not self._check(
            "trigger exists",
            found is not None,
            title,
            f"{self.rerun}: it creates the trigger; until then only the poller "
            "finds flagged tickets",
        ):
            return
        assert found is not None
        problems = objects.trigger_problems(found, self.config, webhook_id)
        fix = f"{self.rerun}: it repairs the trigger and keeps an admin's added conditions"
        for name in (
            "active",
            "fires on the trigger tags",
            "cannot re-fire on Deskgate's writes",
            "notifies Deskgate's webhook",
            "leaves tags and status alone",
        ):
            label = "trigger is active" if name == "active" else f"trigger {name}"
            self._check(label, name not in problems, problems.get(name, str(found["id"])), fix)
        _, kept, _ = objects.reconcile_trigger(found, self.config, webhook_id or "")
        if kept:
            self._check(
                "trigger restrictions an admin added",
                True,
                f"{'; '.join(kept)}: flags it does not push wait for the poller",
            )

    def macros(self, api: httpx.Client) -> None:
        wanted = [(objects.macro(tag, reason), tag) for tag, reason in self.config.triggers.items()]
        wanted += [
            (objects.action_macro(self.config, action), objects.action_tag(self.config, action))
            for action in objects.desk_actions(self.config)
        ]
        for macro, tag in wanted:
            found = setup.find_macro(api, self.config, macro["title"])
            repaired = objects.reconcile_macro(found, tag, macro["title"])[0] if found else macro
            if found is None or not objects.same_macro(found, repaired):
                self._warn(
                    f"macro {macro['title']!r}",
                    f"missing or changed: agents add the tag {tag} by hand",
                    f"{self.rerun}: it writes the macro",
                )
            else:
                self._check(f"macro {macro['title']!r}", True, f"adds {tag}")

    def action_trigger(self, api: httpx.Client, webhook_id: str | None) -> None:
        title = objects.action_trigger_title(self.req.desk)
        found = setup.find_trigger(api, self.config, title)
        if not self._check(
            "action trigger exists",
            found is not None,
            title,
            f"{self.rerun}: it creates the trigger; until then only the poller finds action "
            "requests",
        ):
            return
        assert found is not None
        problems = objects.action_trigger_problems(found, self.config, webhook_id)
        fix = f"{self.rerun}: it repairs the trigger and keeps an admin's added conditions"
        for name in (
            "active",
            "fires on the action tags",
            "fires once per request",
            "notifies Deskgate's webhook",
            "leaves the request alone",
        ):
            label = f"action trigger {'is active' if name == 'active' else name}"
            self._check(label, name not in problems, problems.get(name, str(found["id"])), fix)

    def self_flagging(self, api: httpx.Client) -> None:
        """Warn where a caller could put a trigger tag, or an action request's tag, on their own
        ticket (``self_flag.py``)."""
        flags = set(self.config.triggers) | set(objects.action_tags(self.config))
        try:
            fields = setup.listed(
                api, self.config, "/ticket_fields", "ticket_fields", **setup.CURSOR
            )
            found = self_flag.flagging_fields(fields, flags)
            for kind, path in (("trigger", "/triggers"), ("automation", "/automations")):
                rules = setup.listed(api, self.config, path, path.strip("/"), **setup.CURSOR)
                found += self_flag.flagging_rules(kind, rules, flags, fields)
        except ApiError as exc:
            self._warn(
                "callers cannot flag themselves",
                f"not checked: {exc}",
                "give Deskgate's API user an agent role that may read ticket fields, triggers "
                "and automations",
            )
            return
        for f in found:
            self._warn(f"{f.what} lets callers flag themselves", f.detail, f.fix)
        if not found:
            self._check(
                "callers cannot flag themselves",
                True,
                "no field end users edit and no trigger or automation on their input adds a "
                "trigger tag",
            )


def doctor(req: DoctorRequest[ZendeskDeskConfig]) -> list[Check]:
    doc = _Doctor(req)
    try:
        return doc.run()
    except ApiError as exc:
        doc._check(
            "Zendesk answers", False, str(exc), f"check base_url ({display_url(req.config.base)})"
        )
        return doc.checks
