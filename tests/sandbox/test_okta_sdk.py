"""The Okta simulator against Okta's own Python SDK (``okta`` 3.x): every call Deskgate makes,
through both of the SDK's credentials (an API token, and a service app's private key: the SDK
fetches its own token with its own client assertion), and the SDK's models parse every answer.
What Okta's SDK accepts, Okta's API sends; so the simulator answers as Okta does, not as
Deskgate expects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import freezegun
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from okta.client import Client
from okta.pagination import PaginationHelper

from sandbox import okta as sim
from sandbox.common import Server, serve

# freezegun walks every loaded module's attributes when it freezes time; the SDK's models
# package imports its (pydantic) models lazily on attribute access, which then fails on the
# frozen datetime and leaves time frozen for every later test. Its modules hold no clock.
freezegun.configure(extend_ignore_list=["okta"])

# The SDK signs its client assertion with RSA only (RS256), so this app registers an RSA key.
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = _KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
).decode()
JWK = {
    **jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key(), as_dict=True),
    "kid": "sdk-key",
    "alg": "RS256",
}
CONFIG = sim.OktaSimConfig(jwk=JWK)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(CONFIG))
    yield running
    running.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.url, timeout=10)
    client.post("/_sandbox/reset").raise_for_status()
    client.delete("/_sandbox/calls").raise_for_status()
    yield client
    client.close()


@pytest.fixture(params=["SSWS", "PrivateKey"])
def sdk(request: pytest.FixtureRequest, server: Server, monkeypatch: pytest.MonkeyPatch) -> Client:
    # The SDK refuses an http org URL unless told it is testing (the simulator is on loopback).
    monkeypatch.setenv("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")
    if request.param == "SSWS":
        return Client({"orgUrl": server.url, "token": CONFIG.api_token})
    return Client(
        {
            "orgUrl": server.url,
            "authorizationMode": "PrivateKey",
            "clientId": CONFIG.client_id,
            "scopes": sorted(sim.SCOPES),
            "privateKey": PEM,
            "kid": "sdk-key",
        }
    )


def ok(result: Any) -> Any:
    """The SDK answers (value, response, error), whatever its annotations say; an error means
    it could not take the answer."""
    assert result[-1] is None, result[-1]
    return result[0]


def test_every_call_deskgate_makes_parses_in_okta_sdk(sdk: Client, api: httpx.Client) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
    uid = api.post(
        "/_sandbox/users",
        json={
            "login": "jane.doe@acme.test",
            "mobilePhone": "+15550100",
            "roles": ["HELP_DESK_ADMIN"],
            "groups": ["Break Glass"],
            "factors": ["push", "sms", "token:software:totp"],
        },
    ).json()["id"]
    api.post("/_sandbox/users", json={"login": "other@acme.test", "email": "jane.doe@acme.test"})
    api.post(f"/_sandbox/users/{uid}/lock").raise_for_status()

    async def run() -> None:
        user = ok(await sdk.get_user(uid))
        assert (user.id, user.status.value, user.profile.login) == (
            uid, "LOCKED_OUT", "jane.doe@acme.test",
        )  # fmt: skip
        assert user.links is not None  # status-dependent _links, unlock among them
        listed: Any = await sdk.list_users(search='profile.email eq "jane.doe@acme.test"', limit=1)
        found, response, error = listed
        after = PaginationHelper.extract_next_cursor(response.headers)
        assert error is None and len(found) == 1 and after  # the SDK reads Okta's Link
        more = ok(await sdk.list_users(search='profile.email eq "jane.doe@acme.test"', after=after))
        assert len(more) == 1 and {found[0].id, more[0].id} >= {uid}
        roles = ok(await sdk.list_assigned_roles_for_user(uid))
        assert [r.actual_instance.type.value for r in roles] == ["HELP_DESK_ADMIN"]
        groups = ok(await sdk.list_user_groups(uid))
        assert {g.profile.actual_instance.name for g in groups} == {"Everyone", "Break Glass"}
        factors = ok(await sdk.list_factors(uid))
        assert [f.factor_type.value for f in factors] == [
            "push", "sms", "token:software:totp",
        ]  # fmt: skip
        ok(await sdk.unlock_user(uid))
        ok(await sdk.reset_factors(uid))
        token = ok(await sdk.reset_password(uid, send_email=True, revoke_sessions=True))
        assert token.reset_password_url is None  # Okta e-mailed it: nothing handed back
        revoke: Any = sdk.revoke_user_sessions  # annotated "-> None"; it answers the triple too
        ok(await revoke(uid, oauth_tokens=True))
        logged: Any = await sdk.list_log_events(since=since, limit=100)
        events, response, error = logged
        # Polling (since, no until): a next link, always.
        assert error is None and PaginationHelper.extract_next_cursor(response.headers)
        kinds = [e.event_type for e in events]
        assert kinds[-5:] == [
            "user.account.unlock_by_admin",
            "user.mfa.factor.reset_all",
            "user.account.reset_password",
            "user.session.clear",
            "user.session.clear",
        ]
        assert all(e.uuid and e.published and e.actor.id and e.target for e in events)
        assert events[-1].debug_context.debug_data["requestId"]

    asyncio.run(run())
    counts = api.get("/_sandbox/calls").json()["counts"]
    assert counts["POST /api/v1/users/<user_id>/lifecycle/reset_password"] == 1
    assert not any(c["status"] == 411 for c in api.get("/_sandbox/calls").json()["calls"])
