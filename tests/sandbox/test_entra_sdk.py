"""Microsoft's own Graph SDK (msgraph-sdk) against the Entra simulator: each call Deskgate makes,
read back through the SDK's generated models, so the simulator answers in the shapes a real
Graph client expects (property names, ``@odata.type`` discriminators, error bodies, paging).

The SDK is async and takes an Azure ``TokenCredential``: the one here fetches its token from the
simulator's token endpoint; the request adapter's ``base_url`` points at the simulator (plain
http is allowed to loopback by the SDK's authentication provider).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph.generated.audit_logs.directory_audits.directory_audits_request_builder import (
    DirectoryAuditsRequestBuilder,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.role_management.directory.role_assignments.role_assignments_request_builder import (  # noqa: E501
    RoleAssignmentsRequestBuilder,
)
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]

from sandbox import entra as sim
from sandbox.common import Server, serve

SIM = sim.EntraSimConfig(audit_delay_seconds=0, page_size=1)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = serve(sim.create_app(SIM))
    yield running
    running.stop()


class SimulatorCredential:
    """An Azure ``TokenCredential`` getting an app token from the simulator's token endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        form = {"grant_type": "client_credentials", "client_id": SIM.client_id,
                "client_secret": SIM.client_secret, "scope": scopes[0]}  # fmt: skip
        resp = httpx.post(f"{self.url}/{SIM.tenant_id}/oauth2/v2.0/token", data=form)
        resp.raise_for_status()
        body = resp.json()
        return AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))


@contextlib.asynccontextmanager
async def sdk_http() -> AsyncIterator[httpx.AsyncClient]:
    """The SDK wraps the client's transport in its middleware, and closing the client does not
    reach the wrapped one: it is closed here."""
    transport = httpx.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as http:
        yield http
    await transport.aclose()


def graph(server: Server, http: httpx.AsyncClient) -> GraphServiceClient:
    """The SDK as Microsoft builds it (its default middleware: retries, redirects, telemetry),
    on an ``http`` client the test closes."""
    auth = AzureIdentityAuthenticationProvider(
        SimulatorCredential(server.url),
        scopes=["https://graph.microsoft.com/.default"],
        allowed_hosts=["127.0.0.1"],
    )
    adapter = GraphRequestAdapter(auth, GraphClientFactory.create_with_default_middleware(
        client=http))  # fmt: skip
    adapter.base_url = f"{server.url}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


def test_the_sdk_reads_and_acts_through_every_call_deskgate_makes(server: Server) -> None:
    api = httpx.Client(base_url=server.url)
    made = api.post("/_sandbox/users", json={
        "upn": "sdk.user@acme.test", "mobilePhone": "+1 2065550100",
        "roles": ["Helpdesk Administrator"], "groups": ["IT Admins"],
        "methods": [{"type": "phone", "phoneNumber": "+1 2065550100", "default": True},
                    {"type": "fido2", "displayName": "YubiKey"}],
    }).json()  # fmt: skip
    user_id = made["id"]

    async def run() -> None:
        async with sdk_http() as http:
            await calls(graph(server, http))

    async def calls(client: GraphServiceClient) -> None:
        me = client.users.by_user_id(user_id)
        select = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
            select=["id", "userPrincipalName", "mail", "mobilePhone", "accountEnabled",
                    "createdDateTime"],
        )  # fmt: skip
        user = await me.get(RequestConfiguration(query_parameters=select))
        assert user is not None and user.id == user_id
        assert (user.user_principal_name, user.account_enabled) == ("sdk.user@acme.test", True)
        assert user.mobile_phone == "+1 2065550100" and user.created_date_time is not None

        search = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            filter="mail eq 'sdk.user@acme.test'", select=["id"]
        )
        users = await client.users.get(RequestConfiguration(query_parameters=search))
        assert users is not None and [u.id for u in users.value or []] == [user_id]

        roles = RoleAssignmentsRequestBuilder.RoleAssignmentsRequestBuilderGetQueryParameters(
            filter=f"principalId eq '{user_id}'", expand=["roleDefinition"]
        )
        assigned = await client.role_management.directory.role_assignments.get(
            RequestConfiguration(query_parameters=roles)
        )
        assert assigned is not None and assigned.value
        definition = assigned.value[0].role_definition
        assert definition is not None and definition.display_name == "Helpdesk Administrator"

        first = await me.member_of.get()  # page_size 1: the role is on the next page
        assert first is not None and first.odata_next_link
        assert [type(m).__name__ for m in first.value or []] == ["Group"]
        rest = await me.member_of.with_url(first.odata_next_link).get()
        assert rest is not None and [type(m).__name__ for m in rest.value or []] == [
            "DirectoryRole"
        ]

        methods = await me.authentication.methods.get()
        assert methods is not None
        kinds = {type(m).__name__: m.id for m in methods.value or []}
        assert set(kinds) == {"PasswordAuthenticationMethod", "PhoneAuthenticationMethod",
                              "Fido2AuthenticationMethod"}  # fmt: skip
        phone = me.authentication.phone_methods.by_phone_authentication_method_id(
            str(kinds["PhoneAuthenticationMethod"])
        )
        with pytest.raises(ODataError) as refused:  # the default, while FIDO2 is left
            await phone.delete()
        assert refused.value.response_status_code == 400
        assert refused.value.error is not None and refused.value.error.code == "badRequest"
        fido2 = me.authentication.fido2_methods.by_fido2_authentication_method_id(
            str(kinds["Fido2AuthenticationMethod"])
        )
        await fido2.delete()
        await phone.delete()

        revoked = await me.revoke_sign_in_sessions.post()
        assert revoked is not None and revoked.value is True

        mine = DirectoryAuditsRequestBuilder.DirectoryAuditsRequestBuilderGetQueryParameters(
            filter=f"initiatedBy/app/appId eq '{SIM.client_id}'", orderby=["activityDateTime"]
        )
        page = await client.audit_logs.directory_audits.get(
            RequestConfiguration(query_parameters=mine)
        )
        entries = []
        while page is not None:
            entries += page.value or []
            link = page.odata_next_link
            page = await client.audit_logs.directory_audits.with_url(link).get() if link else None
        assert [e.activity_display_name for e in entries] == [
            "Admin deleted security info", "Admin deleted security info",
            "Update StsRefreshTokenValidFrom Timestamp",
        ]  # fmt: skip
        for entry in entries:
            assert entry.initiated_by is not None and entry.initiated_by.app is not None
            assert entry.initiated_by.app.app_id == SIM.client_id
            assert entry.target_resources and entry.target_resources[0].id == user_id
            assert entry.activity_date_time is not None

    asyncio.run(run())
    api.close()


def test_the_sdk_reads_graphs_refusals_as_odata_errors(server: Server) -> None:
    async def run() -> None:
        async with sdk_http() as http:
            await missing_user(graph(server, http))

    async def missing_user(client: GraphServiceClient) -> None:
        with pytest.raises(ODataError) as missing:
            await client.users.by_user_id("00000000-0000-4000-8000-000000000000").get()
        assert missing.value.response_status_code == 404
        assert missing.value.error is not None
        assert missing.value.error.code == "Request_ResourceNotFound"
        assert missing.value.error.inner_error is not None  # innerError: date, request-id

    asyncio.run(run())
