"""Okta as an identity provider: users (found by e-mail or login, re-read by id), their admin
roles and groups, the four actions, and the System Log (``connectors/okta/log.py``).

Every call goes through ``connectors.http`` with Okta's errors read by ``errorCode`` (the
status alone cannot tell "wrong state for this user" from "no permission": both are 403).
Lifecycle POSTs carry ``Content-Length: 0`` (Okta answers 411 without it); a 429 waits until
``X-Rate-Limit-Reset`` as measured against the answer's own ``Date``, so a skewed clock here
does not shorten or stretch the wait.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from config.privacy import scrub
from connectors.http import (
    MAX_RETRY_AFTER,
    Fatal,
    NotFound,
    RateLimited,
    new_client,
    request,
    same_origin,
)
from connectors.identity_provider import (
    Action,
    ActionDone,
    ContactField,
    IdpEvent,
    IdpUser,
    Match,
)
from connectors.okta import log
from connectors.okta.auth import SYSTEM, OktaAuth
from connectors.okta.config import OktaIdpConfig

USER_AGENT = "deskgate/0.1 (identity verification gate; okta)"
# Statuses in which a user may not be verified or acted on: deactivated, suspended, not yet
# activated.
INACTIVE = frozenset({"DEPROVISIONED", "SUSPENDED", "STAGED"})
RETENTION_SECONDS = 90 * 86400  # the System Log keeps 90 days
SEARCH_LIMIT = 200  # Okta's largest page of users
SEARCH_PAGES = 5  # a second match already ends the search; this bounds a misbehaving one
LOG_PAGES = 10  # per read_log call; the cursor carries on from there
LOG_LIMIT = 1000  # Okta's largest System Log page
# Okta's codes for "not possible for this user now": unlock not allowed (AD-sourced), not in
# this status, password reset failed, validation (e.g. no factor to reset). Not a permission
# problem, though Okta answers some of them 403.
REFUSED = frozenset({"E0000001", "E0000017", "E0000032", "E0000038", "E0000154"})
_SEARCHABLE = re.compile(r"^[^\"\\\s]{1,254}$")  # what may go inside a search's quotes

EXPECT: dict[Action, str] = {
    "unlock": "Your Okta account is unlocked: sign in with your usual password.",
    "reset_mfa": (
        "Your Okta sign-in factors were removed and your sessions ended: at your next sign-in "
        "Okta asks you to set up a factor again."
    ),
    "reset_password": (
        "Okta has e-mailed a password reset link to the address on your Okta account, and your "
        "sessions were ended."
    ),
    "revoke_sessions": "Your Okta sessions and app tokens were ended: sign in again everywhere.",
}


def describe_error(response: httpx.Response) -> str:
    """Okta's ``errorCode: errorSummary``; a 403 without a body names the missing scope."""
    challenge = response.headers.get("WWW-Authenticate", "")
    if "insufficient_scope" in challenge:
        scope = re.search(r'scope="([^"]*)"', challenge)
        return f"insufficient_scope: the token lacks {scope.group(1) if scope else 'a scope'}"
    body = response.json()
    causes = "; ".join(str(c.get("errorSummary", "")) for c in body.get("errorCauses") or [])
    text = f"{body.get('errorCode', '')}: {body.get('errorSummary', '')}"
    return f"{text} ({causes})" if causes else text


def check(response: httpx.Response) -> None:
    """Okta's own reading of an answer, before the status decides."""
    if response.status_code == 429:
        raise RateLimited(SYSTEM, rate_limit_wait(response))
    if response.status_code < 400:
        return
    try:
        code = response.json().get("errorCode")
    except ValueError:
        return
    if code in REFUSED:
        raise Fatal(SYSTEM, scrub(describe_error(response)), response.status_code)
    if code == "E0000007":
        raise NotFound(SYSTEM, scrub(describe_error(response)), response.status_code)


def rate_limit_wait(response: httpx.Response) -> float:
    """Seconds until the bucket resets: ``X-Rate-Limit-Reset`` minus the answer's ``Date`` (as
    Okta's SDKs do), a minute when either is missing (Okta's windows are a minute)."""
    try:
        reset = float(response.headers["X-Rate-Limit-Reset"])
        now = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 60.0
    return min(max(reset - now, 1.0), MAX_RETRY_AFTER)


class OktaConnector:
    """One Okta org (``OktaIdpConfig``)."""

    actions: frozenset[Action] = frozenset(EXPECT)

    def __init__(
        self, name: str, config: OktaIdpConfig, timeout: float, deadline: float = 30.0
    ) -> None:
        self.name = name
        self.config = config
        token_client = new_client(config.base, timeout, deadline=deadline)
        self.auth = OktaAuth(config, token_client)
        self._token_client = token_client
        self.client = new_client(
            config.base,
            timeout,
            deadline=deadline,
            auth=self.auth,
            headers={"User-Agent": USER_AGENT},
        )

    @property
    def own_actor_id(self) -> str | None:
        """The System Log's ``actor.id`` of Deskgate's own actions: its OAuth client id (an API
        token acts as the admin who made it, whom the log cannot tell from that admin)."""
        return self.config.client_id

    def close(self) -> None:
        self.client.close()
        self._token_client.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return request(self.client, SYSTEM, method, url, describe_error, check=check, **kwargs)

    # -- users ----------------------------------------------------------------------------

    def find_user(self, match: Match, value: str) -> IdpUser | None:
        if match == "id":
            user_id: str | None = value
        else:
            if not _SEARCHABLE.fullmatch(value):
                raise Fatal(SYSTEM, f"cannot search Okta for this {match}: unexpected characters")
            attribute = "profile.email" if match == "email" else "profile.login"
            user_id = self._search_one(f'{attribute} eq "{value}"')
        if user_id is None or not re.fullmatch(r"[A-Za-z0-9]{1,64}", user_id):
            return None
        try:
            body = self._call("GET", f"/api/v1/users/{quote(user_id)}").json()
        except NotFound:
            return None
        return self._user(body)

    def _search_one(self, expression: str) -> str | None:
        """The one user id a search finds (searches are eventually consistent and include
        deactivated users: the caller re-reads by id); more than one is ambiguous."""
        ids: list[str] = []
        url: str | None = "/api/v1/users"
        params: dict[str, Any] | None = {"search": expression, "limit": SEARCH_LIMIT}
        for _ in range(SEARCH_PAGES):
            if url is None:
                break
            response = self._call("GET", url, params=params)
            ids += [str(u["id"]) for u in response.json()]
            url, params = self._next(response), None
            if len(ids) > 1:
                break
        if len(ids) > 1:
            raise Fatal(SYSTEM, f"{len(ids)} or more Okta users match: an ambiguous person")
        return ids[0] if ids else None

    def _next(self, response: httpx.Response) -> str | None:
        """The ``rel="next"`` link, only on the org's own origin (credentials go nowhere else)."""
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        if not same_origin(link, self.config.base):
            raise Fatal(SYSTEM, "a next link points away from the Okta org")
        parts = urlsplit(link)
        return f"{parts.path}?{parts.query}" if parts.query else parts.path

    def _user(self, body: dict[str, Any]) -> IdpUser:
        user_id = str(body["id"])
        profile = body.get("profile") or {}
        roles = self._call("GET", f"/api/v1/users/{user_id}/roles").json()
        because = [str(r.get("type")) for r in roles if r.get("status", "ACTIVE") == "ACTIVE"]
        if self.config.privileged_groups:
            groups = self._call("GET", f"/api/v1/users/{user_id}/groups").json()
            names = {str((g.get("profile") or {}).get("name")) for g in groups}
            because += sorted(names & set(self.config.privileged_groups))
        status = str(body.get("status", ""))
        return IdpUser(
            id=user_id,
            login=str(profile.get("login", "")),
            email=profile.get("email") or None,
            phone=profile.get("mobilePhone") or None,
            status=status,
            active=status not in INACTIVE,
            privileged=bool(because),
            privileged_because=tuple(because),
            locked=status == "LOCKED_OUT",
        )

    def changed_at(self, user: IdpUser, field: ContactField) -> float | None:
        """The latest logged change of ``field`` (a profile update naming it, a primary e-mail
        change), else the user's creation when the log still holds it; None otherwise."""
        now = time.time()
        newest_logged: float | None = None
        created: float | None = None
        url: str | None = "/api/v1/logs"
        params: dict[str, Any] | None = {
            "filter": f'target.id eq "{user.id}"',
            "since": _iso(now - RETENTION_SECONDS + 60),
            "until": _iso(now + 1),
            "sortOrder": "DESCENDING",
            "limit": LOG_LIMIT,
        }
        for _ in range(LOG_PAGES):
            if url is None:
                break
            response = self._call("GET", url, params=params)
            for raw in response.json():
                at = log.epoch(str(raw["published"]))
                newest_logged = at if newest_logged is None else max(newest_logged, at)
                if field in log.changed_fields(raw):
                    return self._not_before_unlogged(user, at, newest_logged)
                if raw.get("eventType") == "user.lifecycle.create":
                    created = at
            url, params = self._next(response), None
        return self._not_before_unlogged(user, created, newest_logged) if created else None

    def _not_before_unlogged(
        self, user: IdpUser, found: float | None, newest_logged: float | None
    ) -> float | None:
        """Okta logs events late: when the record changed after anything the log shows yet,
        the change may be this field's, so the record's ``lastUpdated`` counts instead."""
        body = self._call("GET", f"/api/v1/users/{quote(user.id)}").json()
        updated = log.epoch(str(body["lastUpdated"])) if body.get("lastUpdated") else None
        if found is None or updated is None or newest_logged is None:
            return found
        return updated if updated > newest_logged + 1 else found

    # -- actions --------------------------------------------------------------------------

    def perform(self, user: IdpUser, action: Action) -> ActionDone:
        base = f"/api/v1/users/{quote(user.id)}"
        if action == "unlock":
            response = self._post(f"{base}/lifecycle/unlock")
        elif action == "reset_mfa":
            reset = self._reset_factors(base)
            ended = self._call("DELETE", f"{base}/sessions", params={"oauthTokens": "true"})
            response = reset or ended
        elif action == "reset_password":
            # Okta e-mails the link to the user's address of record. Never sendEmail=false: the
            # answer would carry the reset URL, a secret Deskgate must not hold.
            params = {"sendEmail": "true", "revokeSessions": "true"}
            response = self._post(f"{base}/lifecycle/reset_password", params=params)
        elif action == "revoke_sessions":
            response = self._call("DELETE", f"{base}/sessions", params={"oauthTokens": "true"})
        else:
            raise Fatal(SYSTEM, f"Okta does not perform {action!r}")
        return ActionDone(action, response.headers.get("X-Okta-Request-Id"), EXPECT[action])

    def _reset_factors(self, base: str) -> httpx.Response | None:
        """Reset every factor; None when Okta finds none to reset (``E0000001``: the call takes
        no other input), which is also what a retry meets after a reset whose sessions call
        failed, so the retry goes on to end the sessions instead of failing for good."""
        try:
            return self._post(f"{base}/lifecycle/reset_factors")
        except Fatal as exc:
            if exc.status == 400 and exc.reason.startswith("E0000001"):
                return None
            raise

    def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._call("POST", url, content=b"", headers={"Content-Length": "0"}, **kwargs)

    # -- the System Log -------------------------------------------------------------------

    def read_log(self, cursor: str | None) -> tuple[list[IdpEvent], str]:
        if cursor is not None and not cursor.startswith("/api/v1/logs?"):
            raise Fatal(SYSTEM, "not an Okta System Log cursor")
        url: str = cursor or "/api/v1/logs"
        params: dict[str, Any] | None = (
            None if cursor else {"since": _iso(time.time()), "sortOrder": "ASCENDING"}
        )
        if params is not None:
            params["limit"] = LOG_LIMIT
        events: list[IdpEvent] = []
        for _ in range(LOG_PAGES):
            response = self._call("GET", url, params=params)
            page = response.json()
            events += [log.to_event(e) for e in page if isinstance(e, dict)]
            following = self._next(response)
            if following is None:
                raise Fatal(SYSTEM, "the System Log answered no next link to poll with")
            url, params = following, None
            if len(page) < LOG_LIMIT:
                break
        return events, url


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
