"""A desk with an identity provider, through the whole stack (a real worker, the Zendesk and
Okta simulators): the employee of record is Okta's, the link goes to Okta's address, and a
verified result offers the reason's action on the ticket, once, within the grant."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from sandbox.stack import Stack, StackOptions, wait_for
from tests.e2e.conftest import E2E_REDIS_URL
from tests.e2e.test_lifecycle import WAIT, settle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def idp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run = f"idp{os.getpid()}"
    options = StackOptions(
        redis_url=E2E_REDIS_URL, key_prefix=run, queue=f"deskgate-{run}", worker_concurrency=2,
        extra_env={
            "DESKGATE_DESKS__ACME_ZENDESK__IDP": "acme_okta",
            "DESKGATE_DESKS__ACME_ZENDESK__IDP_MATCH": "login",
        },
        extra_config='\n[reasons."MFA reset"]\nactions = ["reset_mfa"]\n',
    )  # fmt: skip
    with Stack(options, workdir=tmp_path_factory.mktemp("idp")) as stack:
        yield stack
    stack.redis.delete(*stack.redis.scan_iter(f"{run}:*"), options.queue)


def test_the_link_goes_to_oktas_address_and_the_verified_note_offers_the_action(
    idp_stack: Stack,
) -> None:
    stack = idp_stack
    desk = stack.driver("zendesk")
    desk.set_push(True)
    login = f"jane{os.getpid()}@acme.test"
    okta_email = f"jane.doe{os.getpid()}@corp.test"
    stack.enrol(login)
    stack.sim["okta"].post(
        "/_sandbox/users",
        json={"login": login, "email": okta_email, "created": time.time() - 30 * 86400},
    ).raise_for_status()
    ticket = desk.create_ticket("Jane Employee", login, "I lost my phone, reset my MFA")
    stack.reset_calls()
    desk.flag(ticket)
    wait_for(lambda: desk.view(ticket).marker == "pending", WAIT, "the gate")
    [session] = stack.sessions(login)
    assert session["notification"]["email"] == okta_email  # Okta's address, not the desk's
    gate = desk.notes(ticket)[-1]
    assert "differs from 'acme_okta''s record" in gate and okta_email not in gate
    stack.complete(session["interviewId"], "pass")
    wait_for(lambda: desk.view(ticket).marker == "verified", WAIT, "the verified marker")
    settle(stack)
    outcome = desk.notes(ticket)[-1]
    assert "may be done by Deskgate in 'acme_okta', once, until" in outcome
    assert "idv_do_reset_mfa" in outcome
    # docs/idp.md's figure: Okta calls for one verification (find, re-read, roles, two log reads
    # dating the login and the e-mail); the grant itself costs none until it is used.
    assert stack.calls("okta") == {
        "GET /api/v1/users": 1,
        "GET /api/v1/users/<path:id_or_login>": 3,
        "GET /api/v1/users/<user_id>/roles": 1,
        "GET /api/v1/logs": 2,
    }
