"""``deskgate doctor`` for a ServiceNow desk: with Deskgate's everyday credentials, can it do
what it does (read and write the table, read callers), and is what ``setup`` installs there and
as shipped (fields, choices, both properties, the business rule, the UI action), and are the
fields protected (the status field's write ACL passes only the deskgate role, which the
integration user holds; the flag field's and the UI action's only the roles that may ask)?

Every failure names its fix in one sentence. The secret property is never read in clear (the
platform stores password2 values encrypted): it must be non-empty, and the fingerprint setup wrote
beside it must match the configured webhook secret.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.http import ApiError, AuthFailed, json_body, new_client, request
from connectors.provisioning import Check, DoctorRequest, Status, fingerprint
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.connector import describe_error, no_audit
from connectors.servicenow.oauth import ServiceNowOAuth, auth_for
from connectors.servicenow.records import (
    DESKGATE_ROLE,
    Wanted,
    business_rule_script,
    rule_condition,
    secret_property,
    url_property,
    wanted,
    webhook_url,
)
from connectors.servicenow.setup import FINGERPRINT, secret_env

SETUP = "run `deskgate setup {desk} --apply` (or import its update set again)"


class _Doctor:
    def __init__(self, req: DoctorRequest[ServiceNowDeskConfig], client: httpx.Client) -> None:
        self.req, self.client = req, client
        self.system = f"servicenow:{req.desk}"
        self.checks: list[Check] = []
        self.fix_setup = SETUP.format(desk=req.desk)

    def add(self, name: str, status: Status, detail: str = "", fix: str = "") -> None:
        self.checks.append(Check(self.system, name, status, detail, fix))

    def get(self, table: str, query: str, fields: str, limit: int = 1) -> list[dict[str, Any]]:
        response = request(
            self.client, "servicenow", "GET", f"/api/now/table/{table}", describe_error,
            params={"sysparm_query": query, "sysparm_fields": fields, "sysparm_limit": limit,
                    "sysparm_exclude_reference_link": "true"},
        )  # fmt: skip
        rows: list[dict[str, Any]] = json_body("servicenow", response).get("result") or []
        return rows

    # -- what Deskgate does every day -------------------------------------------------------

    def access(self) -> bool:
        c = self.req.config
        try:
            rows = self.get(c.table, "", "sys_id")
        except AuthFailed as exc:
            self.add(
                "credentials", Status.FAIL, str(exc),
                f"set the desk's username and password (or OAuth client) to the integration "
                f"user's, which ServiceNow refused ({exc.status})",
            )  # fmt: skip
            return False
        except ApiError as exc:
            self.add(
                f"read {c.table}",
                Status.FAIL,
                str(exc),
                f"give the integration user read access to {c.table} (the itil role)",
            )
            return False
        self.add("credentials", Status.OK, f"signed in as {c.note_author}")
        self.add(f"read {c.table}", Status.OK)
        if not rows:
            self.add(f"write {c.table}", Status.WARN, "no record to try an empty update on",
                     "run doctor again once the table holds a record")  # fmt: skip
        else:
            try:  # an update that changes nothing: the ACL is checked, nothing is written
                request(
                    self.client,
                    "servicenow",
                    "PATCH",
                    f"/api/now/table/{c.table}/{rows[0]['sys_id']}",
                    describe_error,
                    json={},
                )
                self.add(f"write {c.table}", Status.OK)
            except ApiError as exc:
                self.add(
                    f"write {c.table}",
                    Status.FAIL,
                    str(exc),
                    f"give the integration user write access to {c.table} (the itil role)",
                )
        try:
            self.get("sys_user", "", "sys_id,email")
            self.add("read sys_user", Status.OK)
        except ApiError as exc:
            self.add("read sys_user", Status.FAIL, str(exc),
                     "give the integration user read access to sys_user, so Deskgate can find "
                     "the caller's e-mail of record")  # fmt: skip
        if c.destination_min_age_hours > 0:
            # How old the caller's contact is comes from sys_audit: unreadable, every field
            # counts from when Deskgate first saw it (a caller's first link waits the full age).
            try:
                self.get("sys_audit", "tablename=sys_user", "sys_id")
                self.add("read sys_audit", Status.OK)
            except ApiError as exc:
                self.add(
                    "read sys_audit",
                    Status.FAIL,
                    str(exc),
                    "give the integration user read access to sys_audit (for sys_user), or set "
                    "destination_min_age_hours = 0 to turn the contact-age check off",
                )
        return True

    def contact_audit(self) -> None:
        """A contact's age is read from sys_audit field by field: a contact field the dictionary
        excludes from auditing (no_audit=true) leaves no row when it changes, so every link to
        it is refused (its age cannot be told)."""
        if self.req.config.destination_min_age_hours <= 0:
            return
        for column in ("email", "mobile_phone"):
            name = f"audit sys_user.{column}"
            try:
                rows = self.get("sys_dictionary", f"name=sys_user^element={column}",
                                "name,element,attributes")  # fmt: skip
            except ApiError as exc:
                rows, why = [], str(exc)
            else:
                why = "no dictionary entry visible"
            if not rows:
                self.add(name, Status.WARN, f"cannot read its dictionary entry ({why})",
                         "grant the integration user read on sys_dictionary, so Deskgate can "
                         "tell whether the field is audited")  # fmt: skip
            elif no_audit(str(rows[0].get("attributes") or "")):
                self.add(name, Status.FAIL,
                         "excluded from auditing (no_audit=true): its age cannot be told, so "
                         "no link goes to it",
                         f"remove no_audit=true from sys_user.{column}'s dictionary attributes, "
                         "or set destination_min_age_hours = 0")  # fmt: skip
            else:
                self.add(name, Status.OK)

    # -- what setup installs ----------------------------------------------------------------

    def find(self, record: Wanted, fields: str) -> dict[str, Any] | None:
        try:
            rows = self.get(record.table, record.query, fields)
        except ApiError as exc:
            self.add(f"{record.kind} {record.name}", Status.WARN,
                     f"cannot read {record.table}: {exc}",
                     f"grant the integration user read on {record.table}, or run doctor with "
                     "an admin's credentials")  # fmt: skip
            return None
        if not rows:
            self.add(f"{record.kind} {record.name}", Status.FAIL, "missing", self.fix_setup)
            return None
        return rows[0]

    def installed(self) -> None:
        req = self.req
        expected_secret = (
            req.config.webhook_secret.get_secret_value() if req.config.webhook_secret else ""
        )
        records = wanted(req.desk, req.config, req.public_url or "", "")
        for record in records:
            if record.table == "sys_security_acl_role":
                continue  # checked with its ACL
            if record.table == "sys_user_has_role":
                self.user_role(record)
                continue
            row = self.find(record, ",".join(["sys_id", *record.values]))
            if row is None:
                continue
            name = f"{record.kind} {record.name}"
            if record.table == "sys_security_acl":
                roles = {r.values["sys_user_role"] for r in records
                         if r.values.get("sys_security_acl") == record.sys_id}  # fmt: skip
                self.acl(name, row, roles)
            elif record.table == "sys_ui_action" and not str(row.get("roles", "")):
                self.add(name, Status.FAIL, "no roles: anyone who can open the record may ask "
                         "for a verification",
                         f"set its roles to {', '.join(self.req.config.verification_roles)}, "
                         f"or {self.fix_setup}")  # fmt: skip
            elif record.table == "sys_properties" and record.secret:
                self.secret(name, row, expected_secret)
            elif record.table == "sys_properties":
                self.url(name, row)
            elif record.table == "sys_script":
                self.rule(name, row)
            elif str(row.get("active", "true")) == "false" or str(row.get("inactive")) == "true":
                self.add(name, Status.FAIL, "inactive", f"activate it, or {self.fix_setup}")
            else:
                self.add(name, Status.OK)

    def acl(self, name: str, row: dict[str, Any], wanted_roles: set[str]) -> None:
        """A write ACL must be active and pass the roles setup gave it. On the status field
        any other role is a way round Deskgate's status (roles in an ACL are alternatives)."""
        if str(row.get("active")) != "true":
            self.add(name, Status.FAIL, "inactive: anyone who can write the record writes the "
                     "field", f"activate it, or {self.fix_setup}")  # fmt: skip
            return
        try:
            rows = self.get("sys_security_acl_role", f"sys_security_acl={row['sys_id']}",
                            "sys_user_role.name", limit=100)  # fmt: skip
        except ApiError as exc:
            self.add(name, Status.WARN, f"cannot read its roles: {exc}",
                     "run doctor with a user who may read sys_security_acl_role")  # fmt: skip
            return
        roles = {str(r.get("sys_user_role.name", "")) for r in rows} - {""}
        missing, extra = sorted(wanted_roles - roles), sorted(roles - wanted_roles)
        status_acl = wanted_roles == {DESKGATE_ROLE}
        fix = self.fix_setup
        if not roles:
            want = ", ".join(sorted(wanted_roles))
            self.add(name, Status.FAIL, "no roles: anyone passes it", f"give it {want}, or {fix}")
        elif status_acl and DESKGATE_ROLE in missing:
            detail = f"the {DESKGATE_ROLE} role is not on it: Deskgate cannot write the status"
            self.add(name, Status.FAIL, detail, f"add the role {DESKGATE_ROLE}, or {fix}")
        elif status_acl and extra:
            detail = f"the roles {', '.join(extra)} may also write the status Deskgate trusts"
            self.add(name, Status.WARN, detail, "remove those roles from it unless they must")
        elif missing:
            detail = f"without the roles {', '.join(missing)}: they cannot set the field"
            self.add(name, Status.WARN, detail, f"add them, or {fix}")
        else:
            self.add(name, Status.OK, "roles: " + ", ".join(sorted(roles)))

    def user_role(self, record: Wanted) -> None:
        user = record.values["user"]
        name = f"{record.kind} {record.name}"
        query = f"user.user_name={user}^role.name={DESKGATE_ROLE}"
        try:
            rows = self.get("sys_user_has_role", query, "sys_id")
        except ApiError as exc:
            self.add(name, Status.WARN, f"cannot read sys_user_has_role: {exc}",
                     "run doctor with a user who may read users' roles")  # fmt: skip
            return
        if rows:
            self.add(name, Status.OK)
        else:
            self.add(name, Status.FAIL, f"{user} does not hold the {DESKGATE_ROLE} role: "
                     "the status field's ACL refuses its writes",
                     f"grant {user} the role {DESKGATE_ROLE} (User Administration > Users), "
                     f"or {self.fix_setup}")  # fmt: skip

    def url(self, name: str, row: dict[str, Any]) -> None:
        if self.req.public_url is None:
            self.add(name, Status.WARN, "public_url is not set: cannot compare",
                     "set public_url in Deskgate's config")  # fmt: skip
            return
        want, got = webhook_url(self.req.public_url, self.req.desk), str(row.get("value", ""))
        if got != want:
            prop = url_property(self.req.config.table)
            self.add(name, Status.FAIL, f"{got or '(empty)'} is not {want}",
                     f"set {prop} to {want}, or {self.fix_setup}")  # fmt: skip
        else:
            self.add(name, Status.OK, got)

    def secret(self, name: str, row: dict[str, Any], expected: str) -> None:
        env, prop = secret_env(self.req.desk), secret_property(self.req.config.table)
        if not str(row.get("value", "")):
            self.add(name, Status.FAIL, "empty: the business rule sends nothing",
                     f"set {prop} to the value of {env}")  # fmt: skip
            return
        _, _, recorded = str(row.get("description", "")).partition(FINGERPRINT)
        if not expected:
            self.add(name, Status.WARN, "set, but the desk has no webhook_secret",
                     f"set {env} to the property's value")  # fmt: skip
        elif not recorded:
            self.add(name, Status.WARN, "set by hand: cannot tell whether it matches",
                     f"{self.fix_setup} to record its fingerprint")  # fmt: skip
        elif recorded.strip() != fingerprint(expected):
            self.add(
                name,
                Status.FAIL,
                "its fingerprint does not match the desk's webhook_secret",
                f"set {prop} to the value of {env}, or {self.fix_setup}",
            )
        else:
            self.add(name, Status.OK, "set; fingerprint matches the desk's webhook_secret")

    def rule(self, name: str, row: dict[str, Any]) -> None:
        def get(field: str) -> str:
            return str(row.get(field, ""))

        problems = [
            what
            for what, bad in (
                ("inactive", get("active") != "true"),
                (f"runs {get('when') or '(never)'}, not after", get("when") != "after"),
                ("not on insert", get("action_insert") != "true"),
                ("not on update", get("action_update") != "true"),
            )
            if bad
        ]
        if problems:
            self.add(
                name,
                Status.FAIL,
                ", ".join(problems),
                f"make it active, after, on insert and update, or {self.fix_setup}",
            )
            return
        if get("script") != business_rule_script():
            self.add(name, Status.WARN, "its script is not the one this Deskgate ships",
                     self.fix_setup)  # fmt: skip
        elif get("condition") != rule_condition(self.req.config):
            self.add(name, Status.WARN, "its condition is not the desk's flag field and triggers",
                     self.fix_setup)  # fmt: skip
        else:
            self.add(name, Status.OK, "active, after insert and update, script as shipped")


def doctor(req: DoctorRequest[ServiceNowDeskConfig]) -> list[Check]:
    config = req.config
    auth = auth_for(config, req.timeout, req.timeout * 3)
    client = new_client(config.base, req.timeout, deadline=req.timeout * 3, auth=auth,
                        headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        checks = _Doctor(req, client)
        try:
            if checks.access():
                checks.contact_audit()
                checks.installed()
        except ApiError as exc:
            checks.add("ServiceNow", Status.FAIL, str(exc), "check base_url and that it answers")
        return checks.checks
    finally:
        client.close()
        if isinstance(auth, ServiceNowOAuth):
            auth.close()
