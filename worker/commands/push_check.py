"""``deskgate doctor``: do a ServiceNow desk's pushes get through? Pushes refused for their
signature leave every flagged record to the poller, which still works, so nothing else shows it.

Two figures tell it: the audit trail (``verification.requested`` of the last day by ``origin``:
polls found flagged records, pushes announced none), and the web app's own count of deliveries
it refused as unauthenticated (``deskgate_webhook_deliveries_total``, read from its ``/metrics``
when ``metrics_token`` is set; cumulative since the web app started). A known cause besides a
wrong secret: on some on-premises instances, after a node restart, ``gs.getProperty`` hands the
business rule a password2 property's value still encrypted, so it signs with the wrong key.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from connectors.provisioning import Check, Status
from worker import audit

WINDOW = timedelta(days=1)
DELIVERIES = "deskgate_webhook_deliveries"  # the counter's family name (``_total`` samples)
NAME = "pushes"


def refused_pushes(
    public_url: str | None, token: str | None, kind: str, timeout: float
) -> int | None:
    """How many deliveries to ``/webhooks/<kind>`` the web app refused as unauthenticated, or
    None when its metrics cannot be read (no public_url or metrics_token, or no answer)."""
    if public_url is None or not token:
        return None
    try:
        response = httpx.get(
            f"{public_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(response.text)
            if family.name == DELIVERIES
            for sample in family.samples
            if sample.name.endswith("_total")
            and sample.labels.get("endpoint") == kind
            and sample.labels.get("reason") == "unauthenticated"
        )
    )


def push_check(
    redis: Redis[str], prefix: str, desk: str, now: datetime, refused: int | None
) -> Check:
    system = f"servicenow:{desk}"
    origins = Counter(
        str(event["origin"])
        for event in audit.read(redis, prefix, now - WINDOW, now, desk)
        if event["event"] == "verification.requested"
    )
    polled, pushed = origins["poll"], origins["push"]
    if not polled or pushed:
        return Check(system, NAME, Status.OK, f"last day: {pushed} pushed, {polled} found by polls")
    fix = (
        f"run `deskgate setup {desk} --apply` (or set deskgate.webhook_secret to the desk's "
        "webhook_secret); if doctor finds the property right, the instance may hand the business "
        "rule the password2 value encrypted (on-premises, after a node restart): docs/setup.md"
    )
    seen = f"polls found {polled} flagged record(s) in the last day, pushes none"
    if refused is None:
        return Check(
            system, NAME, Status.WARN,
            f"{seen}: pushes are refused (a bad signature?) or not sent",
            f"{fix}; set metrics_token so doctor can read the web app's refusals",
        )  # fmt: skip
    if refused:
        return Check(
            system, NAME, Status.WARN,
            f"{seen}; the web app refused {refused} ServiceNow push(es) as unauthenticated",
            fix,
        )  # fmt: skip
    return Check(
        system, NAME, Status.WARN, f"{seen}, and none reached the web app",
        "check the business rule is active and the instance reaches public_url "
        "(its outbound HTTP log: System Logs > Outbound HTTP Requests)",
    )  # fmt: skip


def now() -> datetime:
    return datetime.now(UTC)
