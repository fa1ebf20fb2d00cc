"""deploy/: the alert rules and the dashboard name only metrics Deskgate exports, the rules load
in Prometheus's own checker where it is installed, and the compose profile mounts them all."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Histogram

from config import metrics
from connectors.registry import SETTINGS
from worker.beat import HEARTBEAT_SUFFIX

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "deskgate.json"
NAME = re.compile(r"\b(deskgate_[a-z0-9_]+|up)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def exported() -> set[str]:
    """Every series name Deskgate serves: its counters and histograms with their suffixes, the
    gauges the worker reads from Redis, and Prometheus's own ``up``."""
    names = {"up", metrics.STORE_UP[0], *(name for name, _ in metrics.COLLECTED_GAUGES)}
    names.update(f"{name}_total" for name, _ in metrics.COLLECTED_COUNTERS)
    for value in vars(metrics).values():
        if isinstance(value, Counter | Histogram):
            for family in value.describe():
                names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_exported_names_are_what_the_registry_serves() -> None:
    # A guard on the helper above: it must not accept names the app never serves.
    assert "deskgate_tasks_total" in exported()
    assert "deskgate_tasks" not in exported()
    assert "deskgate_flag_to_gate_seconds_bucket" in exported()


def test_every_alert_names_only_exported_metrics_and_says_what_to_do() -> None:
    known = exported()
    for rule in rules():
        used = set(NAME.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= known, f"{rule['alert']}: {used - known}"
        for note in ("summary", "description", "runbook"):
            assert rule["annotations"].get(note), f"{rule['alert']} has no {note}"


def test_the_alerts_cover_the_issues_list() -> None:
    names = {rule["alert"] for rule in rules()}
    assert {
        "DeskgateNoGateAfterFlag", "DeskgateDeskPaused", "DeskgateWebhookRefusalsSpiking",
        "DeskgateVerificationsOverdue", "DeskgateQueueBacklog", "DeskgateWorkerDown",
        "DeskgateBeatSilent", "DeskgateAuditSinkLagging", "DeskgateIdpBypass",
    } <= names  # fmt: skip


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_panel_queries_only_exported_metrics() -> None:
    known = exported()
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(NAME.findall(target["expr"]))
            assert used and used <= known, f"{panel['title']}: {used - known}"


def test_the_monitoring_profile_mounts_what_deploy_holds() -> None:
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())
    for service in ("prometheus", "grafana"):
        spec = compose["services"][service]
        assert spec["profiles"] == ["monitoring"]
        for volume in spec["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./") and not source.endswith("metrics_token"):
                assert (DEPLOY.parent / source).exists(), source
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    assert jobs == {"deskgate-web", "deskgate-worker"}
    # The alerts' job names are the scrape config's.
    assert all(set(re.findall(r'job="([^"]+)"', r["expr"])) <= jobs for r in rules())


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())[
        "services"
    ]
    return services


def seconds(duration: str) -> float:
    """A compose duration: ``150s``, ``2m30s``."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_a_stopping_worker_finishes_its_longest_task_before_it_is_killed() -> None:
    """Celery's warm shutdown (SIGTERM) finishes what the worker holds; the grace outlasts a
    task's time limit, so no outside call (a request-new) is cut midway by a deploy."""
    fields = SETTINGS.model_fields
    worker = compose_services()["worker"]
    assert worker["stop_signal"] == "SIGTERM"
    grace = seconds(worker["stop_grace_period"])
    assert grace > fields["task_time_limit_seconds"].default + 10
    assert grace > fields["http_deadline_seconds"].default * 2


def test_web_worker_and_beat_each_have_a_health_check() -> None:
    services = compose_services()
    for role in ("web", "worker", "beat"):
        assert services[role]["healthcheck"]["test"], role
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    # Beat's check reads the heartbeat file its scheduler touches beside its schedule file.
    schedule = services["beat"]["command"][services["beat"]["command"].index("--schedule") + 1]
    assert f"'{schedule}{HEARTBEAT_SUFFIX}'" in " ".join(services["beat"]["healthcheck"]["test"])


def test_the_image_runs_as_a_numeric_non_root_user_on_a_base_chosen_by_argument() -> None:
    """Kubernetes' runAsNonRoot can check a UID, never a name."""
    lines = (DEPLOY.parent / "Dockerfile").read_text().splitlines()
    (user,) = [line for line in lines if line.startswith("USER ")]
    match = re.fullmatch(r"USER (\d+):(\d+)", user)
    assert match and int(match[1]) != 0 and int(match[2]) != 0
    assert "FROM ${BASE_IMAGE}" in lines


def test_the_link_cap_alert_names_no_one_and_says_where_to_find_who() -> None:
    """The metric has no person in it; the runbook says where the person is named."""
    assert metrics.LINK_CAPS._labelnames == ("desk", "window")
    [rule] = [r for r in rules() if r["alert"] == "DeskgateLinkCapsRepeated"]
    assert "requester_key" in rule["annotations"]["runbook"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_fires_the_link_cap_alert_on_repeated_hits_per_desk(tmp_path: Path) -> None:
    """Desk a: one long-window hit; b: two short-window hits in the hour; c: three. The alert
    fires for a and c, not for b."""
    [rule] = [r for r in rules() if r["alert"] == "DeskgateLinkCapsRepeated"]

    def fired(desk: str, hits: str) -> dict[str, Any]:
        notes = {
            name: text.replace("{{ $labels.desk }}", desk).replace("{{ $value | humanize }}", hits)
            for name, text in rule["annotations"].items()
        }
        return {"exp_labels": {"desk": desk, "severity": "warn"}, "exp_annotations": notes}

    series = {  # a sample every 15 s: 30 minutes of nothing, then the hits 10 minutes apart
        ("a", "long"): "0x120 1x240",
        ("b", "short"): "0x120 1x40 2x200",
        ("c", "short"): "0x120 1x40 2x40 3x160",
    }
    inputs = [
        {"series": f'deskgate_link_caps_total{{desk="{d}", window="{w}"}}', "values": values}
        for (d, w), values in series.items()
    ]
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "7s",  # rules run off the scrapes' beat
        "tests": [
            {
                "interval": "15s",
                "input_series": inputs,
                "alert_rule_test": [
                    {"eval_time": "29m", "alertname": rule["alert"], "exp_alerts": []},
                    {
                        # Not aligned with the scrapes: increase() extrapolates, and b's two
                        # hits read 2.004 (a threshold of 2 would fire for it).
                        "eval_time": "60m5s",
                        "alertname": rule["alert"],
                        "exp_alerts": [fired("a", "1.001"), fired("c", "3.004")],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "link_caps_test.yml"
    path.write_text(yaml.safe_dump(spec))
    done = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


RUNBOOKS = DEPLOY.parent / "docs" / "runbooks.md"


def _anchors(markdown: str) -> set[str]:
    """The anchors a Markdown renderer gives ``##`` headings (GitHub's: lower case, punctuation
    dropped, spaces to hyphens)."""
    headings = re.findall(r"^##\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_to_its_own_runbook_section() -> None:
    anchors = _anchors(RUNBOOKS.read_text())
    for rule in rules():
        link = rule["annotations"].get("runbook_url", "")
        path, _, anchor = link.partition("#")
        assert path == "docs/runbooks.md", f"{rule['alert']}: runbook_url {link!r}"
        assert anchor == rule["alert"].lower(), f"{rule['alert']}: anchor {anchor!r}"
        assert anchor in anchors, f"{rule['alert']}: no section ## {rule['alert']} in {RUNBOOKS}"


def test_the_runbook_anchor_check_can_fail() -> None:
    # A guard on the helper: a heading that is not there gives no anchor.
    assert _anchors("## DeskgateWorkerDown\n### Other\n") == {"deskgateworkerdown"}
