"""Issue #16's update set path, end to end: a fresh ServiceNow instance provisioned only by
importing the file `deskgate setup --update-set` writes (upload, preview, commit, as an admin)
and the two steps setup prints for after it (the secret property, the role grant). There, a
choice flag, the default boolean flag and the UI action each push, and Deskgate gates the ticket
with no poll involved. The `--apply` twin is ``test_servicenow_platform``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox.options import StackOptions
from sandbox.registry import SIMULATORS
from sandbox.servicenow_driver import DESK, FLAG_FIELD, TRIGGERS, ServiceNowDriver
from sandbox.stack import Stack, wait_for
from tests.e2e.conftest import E2E_REDIS_URL
from tests.e2e.test_servicenow_platform import WAIT, _boolean_flag, pushed_without_a_poll

pytestmark = pytest.mark.e2e
# The tables the update set carries records of: no --apply wrote any of them.
UPDATE_SET_TABLES = {"sys_dictionary", "sys_documentation", "sys_choice", "sys_choice_set",
                     "sys_properties", "sys_script", "sys_ui_action", "sys_user_role",
                     "sys_security_acl", "sys_security_acl_role"}  # fmt: skip


@pytest.fixture(scope="module", params=["choice flag", "boolean flag"])
def imported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Stack]:  # fmt: skip
    run = f"us{'cb'[request.param == 'boolean flag']}{os.getpid()}"
    options = StackOptions(
        redis_url=E2E_REDIS_URL, key_prefix=run, queue=f"deskgate-{run}", worker_concurrency=4,
        provision="update_set",
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "boolean flag":
            patch.setitem(SIMULATORS, "servicenow", _boolean_flag(SIMULATORS["servicenow"]))
        with Stack(options, workdir=tmp_path_factory.mktemp("update-set")) as stack:
            yield stack
    stack.redis.delete(*stack.redis.scan_iter(f"{run}:*"), options.queue)


def test_only_the_import_and_the_manual_steps_provisioned_the_instance(imported: Stack) -> None:
    assert f"$ deskgate setup {DESK} --update-set {DESK}-update-set.xml" in imported.setup_output
    written = [
        (call["method"], call["path"].split("/")[4])
        for call in imported.call_log("servicenow")
        if call["method"] != "GET" and call["path"].startswith("/api/now/table/")
    ]
    # The secret property and the role grant, by hand; everything else came with the import.
    assert [w for w in written if w[1] in UPDATE_SET_TABLES | {"sys_user_has_role"}] == [
        ("POST", "sys_properties"),
        ("POST", "sys_user_has_role"),
    ]
    committed = imported.sim["servicenow"].get(
        "/api/now/table/sys_remote_update_set",
        auth=SIMULATORS["servicenow"].admin,
        params={"sysparm_fields": "name,state"},
    )
    assert committed.json()["result"] == [{"name": f"Deskgate ({DESK})", "state": "committed"}]


def test_the_flag_and_the_ui_action_push_with_no_poll(imported: Stack) -> None:
    stack = imported
    desk = stack.driver("servicenow")
    assert isinstance(desk, ServiceNowDriver)  # the rule's active flag left as imported
    boolean = "flag_field" not in stack.config_path.read_text()
    sim = stack.app_configs["servicenow"]
    agent = (sim.agent_username, sim.agent_password)
    for n, how in enumerate(("agent", "ui action")):
        email = f"imported{n}.{stack.options.key_prefix}@acme.test"
        stack.enrol(email)
        ticket = desk.create_ticket("Up Date", email, "Reset my MFA")
        if how == "ui action":
            desk.click_verify(ticket)
        else:  # an agent ticks the box, or picks a reason in the choice field
            flag = {"u_idv_required": True} if boolean else {FLAG_FIELD: next(iter(TRIGGERS))}
            desk.api.patch(f"/incident/{ticket}", json=flag, auth=agent).raise_for_status()
        pushed_without_a_poll(stack, desk, ticket)
        # The gate's status, under the write ACL only the granted deskgate role passes.
        wait_for(lambda: desk.view(ticket).marker == "pending", WAIT, "the pending marker")  # noqa: B023 - called at once
