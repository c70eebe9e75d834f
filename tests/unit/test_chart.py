"""The Helm chart: renders with the default values and with every toggle, lints in strict mode,
every built-in object passes kubernetes-validate in strict mode, and the security and RBAC
choices hold (non-root, read-only root, Recreate, least privilege)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from llmbatch.api.crd import render_yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "llm-batch-operator"
RELEASE = "llmbatch"
NAMESPACE = "llmbatch-system"
# Kinds that belong to other projects' CRDs: kubernetes-validate ships only built-in schemas.
FOREIGN_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

TOGGLES: dict[str, dict[str, Any]] = {
    "default": {},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"r": "p"}}}},
    "no-metrics": {"metrics": {"enabled": False}},
    "gateway": {"gateway": {"enabled": True}},
    "minio": {"minio": {"enabled": True}},
    "minio-persistent": {
        "minio": {"enabled": True, "persistence": {"enabled": True, "storageClass": "fast"}}
    },
    "namespaced": {"rbac": {"scope": "namespaced"}, "watchNamespaces": ["team-a", "team-b"]},
    "namespaced-default": {"rbac": {"scope": "namespaced"}},
    "observability": {
        "dashboards": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "podMonitor": {"enabled": True},
    },
    "everything": {
        "gateway": {"enabled": True, "config": {"namespace": "batches"}},
        "minio": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "dashboards": {"enabled": True, "annotations": {"grafana_folder": "LLM"}},
        "prometheusRule": {"enabled": True, "alertLabels": {"team": "ml"}},
        "podMonitor": {"enabled": True, "portName": "metrics"},
        "rbac": {"scope": "namespaced"},
        "watchNamespaces": ["batches"],
        "storage": {"region": "eu-west-1"},
        "operator": {
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "podAnnotations": {"a": "b"},
            "extraEnv": [{"name": "X", "value": "1"}],
            "priorityClassName": "system-cluster-critical",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "commonLabels": {"team": "ml"},
    },
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(values) for name, values in TOGGLES.items()}


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


FULL = f"{RELEASE}-llm-batch-operator"


# --- render, lint, validate --------------------------------------------------------------------


# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest known.
KUBE_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("toggle", TOGGLES)
def test_every_object_is_valid_kubernetes(
    rendered: dict[str, list[dict[str, Any]]], toggle: str, version: str
) -> None:
    checked = 0
    for obj in rendered[toggle]:
        if (obj["apiVersion"], obj["kind"]) in FOREIGN_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 4


def test_strict_validation_catches_a_typo(rendered: dict[str, list[dict[str, Any]]]) -> None:
    # A control for the test above: strict mode must reject a misspelt field.
    deployment = copy.deepcopy(one(rendered["default"], "Deployment", FULL))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="securityContex"):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("toggle", TOGGLES)
def test_lint_strict(toggle: str) -> None:
    report = helm.lint(CHART, TOGGLES[toggle], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; strict lint fails on both.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_metadata() -> None:
    with helm.Chart.load(CHART) as chart:
        meta = chart.metadata
    assert meta["kubeVersion"] == f">={KUBE_VERSIONS[0]}-0"
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "llm-batch-operator"
    assert meta["appVersion"] == "0.1.0"


def test_chart_ships_the_generated_crd() -> None:
    with helm.Chart.load(CHART) as chart:
        [crd] = chart.crds
    assert crd["data"] == render_yaml()
    kubernetes_validate.validate(
        yaml.safe_load(crd["data"]), kubernetes_validate.latest_version(), strict=True
    )


# --- values.schema.json ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"rbac": {"scope": "global"}}, "/rbac/scope"),
        ({"operator": {"replicas": 2}}, "replicas"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"minio": {"rootPassword": "short"}}, "/minio/rootPassword"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"storage": {"endpoint": "minio:9000"}}, "/storage/endpoint"),
        ({"gateway": {"config": {"tiers": {"free": "many"}}}}, "/gateway/config/tiers/free"),
        ({"imagez": {}}, "imagez"),
        ({"runner": {"env": {"BAD-NAME": "1"}}}, "BAD-NAME"),
    ],
)
def test_values_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as info:
        chart.validate_schema(values)
    assert where in str(info.value)


def test_values_schema_covers_every_default_value() -> None:
    with helm.Chart.load(CHART) as chart:
        schema = chart.schema
        defaults = chart.values
        chart.validate_schema(defaults)
    assert schema is not None

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        assert "type" in node or "anyOf" in node, f"{path} has no type"
        if isinstance(value, dict) and "properties" in node:
            for key, item in value.items():
                assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
                walk(item, node["properties"][key], f"{path}.{key}")

    walk(defaults, schema, "values")


def ancestors(lines: list[str], number: int) -> list[str]:
    """The keys enclosing line ``number`` of a YAML file, innermost first."""
    found = []
    indent = len(lines[number]) - len(lines[number].lstrip())
    for candidate in reversed(lines[:number]):
        stripped = candidate.strip()
        depth = len(candidate) - len(candidate.lstrip())
        if stripped and not stripped.startswith("#") and depth < indent:
            found.append(stripped)
            indent = depth
    return found


# Maps whose entries are example data (resource quantities, model names), documented as a whole.
EXAMPLE_MAPS = ("models:", "prices:", "tiers:", "resources:")


def test_values_yaml_documents_every_field() -> None:
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        above = lines[number - 1].strip() if number else ""
        in_example = any(a.startswith(EXAMPLE_MAPS) for a in ancestors(lines, number))
        assert above.startswith("#") or in_example, f"values.yaml:{number + 1} {stripped!r}"


# --- what the objects say --------------------------------------------------------------------


def test_operator_deployment(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = one(rendered["default"], "Deployment", FULL)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["image"] == "llmbatch/operator:0.1.0"
    assert container["command"] == ["llmbatch", "operator"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe == {"path": "/healthz", "port": "healthz"}
    assert ports == {"healthz": 8080, "metrics": 9090}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LLMBATCH_RUNNER_IMAGE"] == "llmbatch/runner:0.1.0"
    assert env["LLMBATCH_NAMESPACES"] == ""
    assert "LLMBATCH_DEFAULT_S3_ENDPOINT" not in env
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert pod["serviceAccountName"] == FULL


def test_image_tags_storage_and_runner_env_reach_the_operator() -> None:
    objects = render(
        {
            "image": {"tag": "dev"},
            "runner": {"image": {"tag": "cpu-1"}, "env": {"VLLM_CPU_KVCACHE_SPACE": "4"}},
            "storage": {"endpoint": "http://minio.storage:9000", "region": "eu-west-1"},
        }
    )
    [container] = one(objects, "Deployment", FULL)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "llmbatch/operator:dev"
    assert env["LLMBATCH_RUNNER_IMAGE"] == "llmbatch/runner:cpu-1"
    assert env["LLMBATCH_RUNNER_ENV_VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert env["LLMBATCH_DEFAULT_S3_ENDPOINT"] == "http://minio.storage:9000"
    assert env["LLMBATCH_DEFAULT_S3_REGION"] == "eu-west-1"


def test_metrics_off_tells_the_operator() -> None:
    [container] = one(render({"metrics": {"enabled": False}}), "Deployment", FULL)["spec"][
        "template"
    ]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LLMBATCH_METRICS_PORT"] == "0"
    assert [p["name"] for p in container["ports"]] == ["healthz"]


def test_all_chart_workloads_are_hardened(rendered: dict[str, list[dict[str, Any]]]) -> None:
    workloads = [o for o in rendered["everything"] if o["kind"] in ("Deployment", "Job")]
    assert {o["metadata"]["name"] for o in workloads} == {
        FULL,
        f"{FULL}-gateway",
        f"{FULL}-minio",
        f"{FULL}-minio-bucket",
    }
    for workload in workloads:
        assert workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in containers(workload):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, workload["metadata"]["name"]
            assert security["capabilities"]["drop"] == ["ALL"]
            assert "limits" in container["resources"]


def rules_of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for role in of_kind(objects, kind) for rule in role["rules"]]


def verbs(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in rules
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_cluster_rbac_is_least_privilege(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["default"]
    assert of_kind(objects, "Role") == []
    rules = rules_of(objects, "ClusterRole")
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
    # Exactly what the operator and kopf call (tests/security/test_rbac.py derives that table).
    assert verbs(rules, "llmbatch.io", "batchjobs") == {"list", "watch", "patch"}
    assert verbs(rules, "llmbatch.io", "batchjobs/status") == {"patch"}
    assert verbs(rules, "batch", "jobs") == {"get", "list", "watch", "create", "delete", "patch"}
    assert verbs(rules, "", "pods") == {"list"}
    assert verbs(rules, "", "events") == {"create"}
    assert verbs(rules, "", "secrets") == {"get"}
    assert verbs(rules, "apiextensions.k8s.io", "customresourcedefinitions") == {"list", "watch"}
    assert verbs(rules, "coordination.k8s.io", "leases") == set()
    [binding] = of_kind(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULL, "namespace": NAMESPACE}]


def test_namespaced_rbac(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["namespaced"]
    roles = of_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    # Only the CRD read stays cluster-wide: kopf scans CRDs, which are cluster-scoped.
    [cluster_role] = of_kind(objects, "ClusterRole")
    assert [r["resources"] for r in cluster_role["rules"]] == [["customresourcedefinitions"]]
    assert verbs(rules_of(objects, "Role"), "llmbatch.io", "batchjobs") == {
        "list",
        "watch",
        "patch",
    }
    [container] = one(objects, "Deployment", FULL)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LLMBATCH_NAMESPACES"] == "team-a,team-b"


def test_namespaced_rbac_defaults_to_the_release_namespace(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["namespaced-default"]
    assert [r["metadata"]["namespace"] for r in of_kind(objects, "Role")] == [NAMESPACE]


def test_metrics_service_and_servicemonitor(rendered: dict[str, list[dict[str, Any]]]) -> None:
    service = one(rendered["default"], "Service", f"{FULL}-metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert of_kind(rendered["default"], "ServiceMonitor") == []
    [monitor] = of_kind(rendered["servicemonitor"], "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["labels"]["r"] == "p"
    assert of_kind(rendered["no-metrics"], "Service") == []


def test_gateway(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert not [o for o in rendered["default"] if "gateway" in o["metadata"]["name"]]
    objects = rendered["gateway"]
    name = f"{FULL}-gateway"
    config = yaml.safe_load(one(objects, "ConfigMap", name)["data"]["gateway.yaml"])
    assert config["namespace"] == NAMESPACE
    assert config["tiers"] == {"free": 100, "basic": 500, "premium": 2000, "enterprise": 10000}
    assert config["storage"] == {"bucket": "llmbatch", "prefix": "gateway"}
    assert config["auth"] == {"keysSecret": f"{name}-keys"}
    [container] = one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["llmbatch", "gateway"]
    assert "--config=/etc/llmbatch/gateway.yaml" in container["command"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    service = one(objects, "Service", name)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    keys = one(objects, "Secret", f"{name}-keys")
    assert keys["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "data" not in keys
    [role] = of_kind(objects, "Role")
    assert verbs(role["rules"], "llmbatch.io", "batchjobs") == {
        "create",
        "get",
        "list",
        "watch",
        "patch",
    }
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    # Without a storage Secret only the keys and webhooks Secrets are reachable, by name.
    assert secret_rules == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{name}-keys"],
            "verbs": ["get", "update", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{name}-webhooks"],
            "verbs": ["get"],
        },
    ]
    assert one(objects, "ServiceAccount", name)


def test_gateway_config_is_accepted_by_the_gateway() -> None:
    config_module = pytest.importorskip(
        "llmbatch.gateway.config", reason="the gateway package is not installed"
    )
    for values in (TOGGLES["gateway"], TOGGLES["everything"]):
        objects = render(values)
        data = one(objects, "ConfigMap", f"{FULL}-gateway")["data"]["gateway.yaml"]
        config_module.GatewayConfig.model_validate(yaml.safe_load(data))


def test_gateway_with_minio_reads_the_minio_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["everything"]
    name = f"{FULL}-gateway"
    config = yaml.safe_load(one(objects, "ConfigMap", name)["data"]["gateway.yaml"])
    assert config["storage"]["secretRef"] == "llmbatch-s3"
    assert config["storage"]["endpoint"] == f"http://{FULL}-minio.{NAMESPACE}.svc:9000"
    assert config["storage"]["region"] == "eu-west-1"
    role = one(objects, "Role", name)
    assert {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["llmbatch-s3"],
        "verbs": ["get"],
    } in role["rules"]


def test_gateway_creates_batchjobs_in_its_configured_namespace(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["everything"]
    role = one(objects, "Role", f"{FULL}-gateway")
    assert role["metadata"]["namespace"] == "batches"
    keys = one(objects, "Secret", f"{FULL}-gateway-keys")
    assert keys["metadata"]["namespace"] == "batches"


def test_minio(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["minio"]
    name = f"{FULL}-minio"
    secret = one(objects, "Secret", "llmbatch-s3")
    data = secret["stringData"]
    assert data["AWS_ACCESS_KEY_ID"] == data["MINIO_ROOT_USER"] == "llmbatch"
    assert data["AWS_SECRET_ACCESS_KEY"] == data["MINIO_ROOT_PASSWORD"]
    assert len(data["MINIO_ROOT_PASSWORD"]) == 32
    url = f"http://{name}.{NAMESPACE}.svc:9000"
    # The operator defaults BatchJobs' S3 endpoint to the chart's MinIO.
    [operator] = one(objects, "Deployment", FULL)["spec"]["template"]["spec"]["containers"]
    assert {"name": "LLMBATCH_DEFAULT_S3_ENDPOINT", "value": url} in operator["env"]
    job = one(objects, "Job", f"{name}-bucket")
    assert "post-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    [mc] = job["spec"]["template"]["spec"]["containers"]
    assert {"name": "BUCKET", "value": "llmbatch"} in mc["env"]
    assert of_kind(objects, "PersistentVolumeClaim") == []
    volumes = one(objects, "Deployment", name)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "emptyDir": {}} in volumes

    persistent = rendered["minio-persistent"]
    [claim] = of_kind(persistent, "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_minio_password_can_be_set() -> None:
    objects = render({"minio": {"enabled": True, "rootPassword": "demo-password"}})
    data = one(objects, "Secret", "llmbatch-s3")["stringData"]
    assert data["AWS_SECRET_ACCESS_KEY"] == "demo-password"


def test_labels_are_consistent(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for obj in rendered["everything"]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, obj["metadata"]["name"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["team"] == "ml"
