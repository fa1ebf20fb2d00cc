"""deploy/kubernetes/: every resource the Kustomize base and the monitoring overlay render is valid
against the Kubernetes schemas (offline, with ``kubernetes-validate``), and holds what production
needs: non-root 10001 with a read-only root, probes and resources everywhere, a grace period past
the task time limit, secrets as files only, network policies and selectors that select the pods,
and exactly one beat. The ConfigMap's TOML with the Secret's keys is a configuration that loads."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config.settings import Settings
from connectors.registry import load_settings
from tests.conftest import settings_data
from webhooks.app import create_app

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# The oldest Kubernetes still commonly run and the newest the package ships.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor"}  # CRDs: no schema in the package
SECRETS_DIR = "/run/secrets/deskgate"
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "API_KEY", "REDIS_URL")
USER = 10001


def render(directory: Path) -> list[dict[str, Any]]:
    """The subset of Kustomize the manifests use: ``resources`` (files, or directories with their
    own kustomization), ``labels`` (metadata only) and ``images``."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            resources.extend(render(path))
        else:
            resources.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for label in spec.get("labels", []):
        assert not label.get("includeSelectors") and not label.get("includeTemplates")
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(label["pairs"])
    for image in spec.get("images", []):
        for container in containers(resources):
            if container["image"].split(":")[0] == image["name"]:
                container["image"] = f"{image['newName']}:{image['newTag']}"
    return resources


def containers(resources: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for deployment in of_kind(resources, "Deployment"):
        yield from deployment["spec"]["template"]["spec"]["containers"]


def of_kind(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def named(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels is used"
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


BASE = render(KUBERNETES)
MONITORED = render(KUBERNETES / "monitoring")
SECRET_EXAMPLE = yaml.safe_load((KUBERNETES / "base" / "secret.example.yaml").read_text())


def test_the_python_rendering_is_what_kustomize_renders() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the Python subset above is used alone")
    for directory, ours in ((KUBERNETES, BASE), (KUBERNETES / "monitoring", MONITORED)):
        out = subprocess.run(
            [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=True
        ).stdout
        theirs = [doc for doc in yaml.safe_load_all(out) if doc]
        key = lambda r: (r["kind"], r["metadata"]["name"])  # noqa: E731
        assert sorted(theirs, key=key) == sorted(ours, key=key)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_resource_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for resource in [*MONITORED, SECRET_EXAMPLE]:
        if resource["kind"] in OPERATOR_KINDS:
            continue  # test_the_prometheus_operator_targets_select_the_pods_and_their_ports
        kubernetes_validate.validate(resource, version, strict=True)
        checked += 1
    assert checked == 12


def test_an_invalid_resource_is_refused_by_the_validation() -> None:
    # A guard on the test above: a misspelt field fails it.
    deployment = yaml.safe_load(yaml.safe_dump(named(BASE, "Deployment", "deskgate-web")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_the_three_deployments_are_web_worker_and_exactly_one_beat() -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(BASE, "Deployment")}
    assert set(deployments) == {"deskgate-web", "deskgate-worker", "deskgate-beat"}
    beat = deployments["deskgate-beat"]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}  # never two beats during a rollout
    args = {name: d["spec"]["template"]["spec"]["containers"][0]["args"] for name, d in
            deployments.items()}  # fmt: skip
    assert args["deskgate-web"][:2] == ["deskgate", "web"]
    assert args["deskgate-worker"][:2] == ["deskgate", "worker"]
    assert args["deskgate-beat"][:2] == ["deskgate", "beat"]
    # The root filesystem is read-only: beat's schedule file lives in the emptyDir.
    assert args["deskgate-beat"][args["deskgate-beat"].index("--schedule") + 1].startswith("/tmp/")


def test_every_pod_runs_as_10001_read_only_without_capabilities() -> None:
    for deployment in of_kind(BASE, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == USER
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] == USER
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            # What must be written goes to an emptyDir at /tmp.
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]
            for env in container["env"]:
                if env["name"] == "PROMETHEUS_MULTIPROC_DIR":
                    assert env["value"].startswith("/tmp/")


def test_every_deployment_has_probes_on_its_own_ports_and_resources() -> None:
    for deployment in of_kind(BASE, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "livenessProbe" in container, deployment["metadata"]["name"]
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                check = container.get(probe, {})
                if "httpGet" in check:
                    assert check["httpGet"]["port"] in ports, (container["name"], probe)
            for amount in ("requests", "limits"):
                assert set(container["resources"][amount]) == {"cpu", "memory"}


def test_the_web_probes_are_routes_the_app_serves() -> None:
    app = create_app(load_settings(**settings_data()))
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    (web,) = named(BASE, "Deployment", "deskgate-web")["spec"]["template"]["spec"]["containers"]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"  # Redis answers too
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert web[probe]["httpGet"]["path"] in routes
    assert web["args"][web["args"].index("--bind") + 1] == "0.0.0.0:8000"


def test_the_worker_probes_its_metrics_server_on_the_port_it_is_told_to_serve() -> None:
    (worker,) = named(BASE, "Deployment", "deskgate-worker")["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    (port,) = worker["ports"]
    assert int(env["DESKGATE_METRICS_PORT"]) == port["containerPort"]
    # Reachable by the kubelet and Prometheus, not only from inside the pod.
    assert env["DESKGATE_METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    assert worker["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": port["name"]}


def test_the_workers_grace_period_outlasts_the_longest_task() -> None:
    limit = Settings.model_fields["task_time_limit_seconds"].default
    assert limit == 120
    worker = named(BASE, "Deployment", "deskgate-worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= limit + 30


def test_secrets_are_files_and_no_environment_value_holds_one() -> None:
    keys = set(SECRET_EXAMPLE["stringData"])
    for deployment in of_kind(BASE, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == SECRET_EXAMPLE["metadata"]["name"]
        assert volume["secret"]["defaultMode"] == 0o440  # the owner and fsGroup 10001 only
        assert pod["securityContext"]["fsGroup"] == USER
        for container in pod["containers"]:
            (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
            assert mount["mountPath"] == SECRETS_DIR and mount["readOnly"] is True
            files = set()
            for env in container["env"]:
                assert "valueFrom" not in env, env["name"]  # not even from a Secret
                if env["name"].endswith("_FILE"):
                    key = env["name"].removeprefix("DESKGATE_").removesuffix("_FILE").lower()
                    assert env["value"] == f"{SECRETS_DIR}/{key}"
                    files.add(key)
                else:
                    assert not any(w in env["name"] for w in SECRET_WORDS), env["name"]
            assert files == keys, deployment["metadata"]["name"]  # each key, and no other


def test_the_configmap_and_the_secrets_keys_make_a_configuration_that_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = named(BASE, "ConfigMap", "deskgate-config")["data"]["deskgate.toml"]
    (web,) = named(BASE, "Deployment", "deskgate-web")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in web["env"]}
    assert env["DESKGATE_CONFIG"] == "/etc/deskgate/deskgate.toml"
    (tmp_path / "deskgate.toml").write_text(config)
    monkeypatch.setenv("DESKGATE_CONFIG", str(tmp_path / "deskgate.toml"))
    # What the files would give each DESKGATE_<PATH>_FILE's variable.
    for name in env:
        if name.endswith("_FILE"):
            monkeypatch.setenv(name.removesuffix("_FILE"), f"value-of-{name.lower()}")
    monkeypatch.setenv("DESKGATE_REDIS_URL", "rediss://deskgate:pw@redis.internal:6380/0")
    settings = load_settings()
    assert set(settings.desks) == {"acme_zendesk", "acme_servicenow"}
    assert settings.metrics_token is not None
    for desk in settings.desks.values():
        assert desk.webhook_secret is not None  # push on


def test_network_policies_select_every_pod_and_open_only_what_it_needs() -> None:
    policies = of_kind(BASE, "NetworkPolicy")
    for deployment in of_kind(BASE, "Deployment"):
        labels = pod_labels(deployment)
        (policy,) = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]  # default deny otherwise
        egress = {
            (port["port"], port["protocol"])
            for rule in policy["spec"]["egress"]
            for port in rule["ports"]
        }
        assert {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (26379, "TCP")} <= egress
        component = labels["app.kubernetes.io/component"]
        # Only the worker calls outside APIs.
        assert ((443, "TCP") in egress) == (component == "worker")
        ingress = policy["spec"].get("ingress", [])
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        own = {p["containerPort"] for p in container.get("ports", [])}
        opened = {port["port"] for rule in ingress for port in rule["ports"]}
        assert opened == own  # its own ports only; beat has none
        if component == "worker":  # metrics: from the monitoring namespace only
            (rule,) = ingress
            (source,) = rule["from"]
            assert source["namespaceSelector"]["matchLabels"] == {
                "kubernetes.io/metadata.name": "monitoring"
            }


def test_selectors_match_the_pods_they_are_for() -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(BASE, "Deployment")}
    for deployment in deployments.values():
        assert selects(deployment["spec"]["selector"], pod_labels(deployment))
    others = [d for n, d in deployments.items() if n != "deskgate-web"]
    service = named(BASE, "Service", "deskgate-web")
    web = deployments["deskgate-web"]
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(web))
    assert not any(selects({"matchLabels": service["spec"]["selector"]}, pod_labels(d))
                   for d in others)  # fmt: skip
    web_ports = {p["name"] for p in web["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= web_ports
    budgets = {b["metadata"]["name"]: b for b in of_kind(BASE, "PodDisruptionBudget")}
    assert set(budgets) == {"deskgate-web", "deskgate-worker"}  # beat must stay drainable
    for name, budget in budgets.items():
        chosen = [n for n, d in deployments.items() if selects(budget["spec"]["selector"],
                  pod_labels(d))]  # fmt: skip
        assert chosen == [name]
        assert deployments[name]["spec"]["replicas"] > budget["spec"].get("minAvailable", 0)


def test_the_prometheus_operator_targets_select_the_pods_and_their_ports() -> None:
    service = named(MONITORED, "Service", "deskgate-web")
    monitor = named(MONITORED, "ServiceMonitor", "deskgate-web")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    # The web app's /metrics needs its token: from the Secret, under the key the pods read.
    credentials = endpoint["authorization"]["credentials"]
    assert credentials == {"name": SECRET_EXAMPLE["metadata"]["name"], "key": "metrics_token"}
    worker = named(MONITORED, "Deployment", "deskgate-worker")
    pods = named(MONITORED, "PodMonitor", "deskgate-worker")
    assert selects(pods["spec"]["selector"], pod_labels(worker))
    (scrape,) = pods["spec"]["podMetricsEndpoints"]
    (port,) = worker["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert scrape["port"] == port["name"]
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
