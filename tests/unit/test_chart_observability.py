"""The chart's observability assets: the Grafana dashboard ConfigMap, the PrometheusRule and the
runner PodMonitor. Each toggle renders, lints strictly and validates; the monitoring.coreos.com
objects, which kubernetes-validate has no schema for, get their structure checked here; the
PodMonitor selects exactly the pods the operator's Job builder labels."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from llmbatch.controller.build_jobs import build_finalize_job, build_runner_job
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.jobview import RUNNER_CONTAINER
from llmbatch.controller.names import BATCHJOB_LABEL
from llmbatch.runner.metrics import DEFAULT_PORT as RUNNER_METRICS_PORT
from tests.ecosystem.test_metric_references import parse as parse_promql
from tests.unit.test_chart import CHART, FULL, KUBE_VERSIONS, NAMESPACE, of_kind, one, render

ROOT = CHART.parents[1]
DASHBOARD_FILE = CHART / "dashboards" / "llmbatch.json"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
MONITORING = "monitoring.coreos.com/v1"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

TOGGLES: dict[str, dict[str, Any]] = {
    "dashboards": {"dashboards": {"enabled": True}},
    "dashboards-custom": {
        "dashboards": {
            "enabled": True,
            "label": "example.org/dashboard",
            "labelValue": "yes",
            "namespace": "monitoring",
            "annotations": {"grafana_folder": "LLM"},
        }
    },
    "rules": {"prometheusRule": {"enabled": True}},
    "rules-custom": {
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kps"},
            "alertLabels": {"team": "ml"},
            "runbookBaseUrl": "https://docs.example.org/troubleshooting",
            "slaAtRisk": {"for": "5m", "severity": "critical"},
            "failed": {"for": "0s", "severity": "info"},
            "stuckQueued": {"window": "2h", "for": "10m", "severity": "critical"},
        }
    },
    "podmonitor": {"podMonitor": {"enabled": True}},
    "podmonitor-named-port": {
        "podMonitor": {"enabled": True, "portName": "metrics", "labels": {"release": "kps"}},
        "watchNamespaces": ["team-a", "team-b"],
    },
    "podmonitor-namespaced": {"podMonitor": {"enabled": True}, "rbac": {"scope": "namespaced"}},
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(values) for name, values in TOGGLES.items()}


def test_everything_is_off_by_default() -> None:
    objects = render({})
    assert of_kind(objects, "PodMonitor") == []
    assert of_kind(objects, "PrometheusRule") == []
    assert not [
        o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")
    ]


@pytest.mark.parametrize("toggle", TOGGLES)
def test_lint_strict(toggle: str) -> None:
    report = helm.lint(CHART, TOGGLES[toggle], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("toggle", TOGGLES)
def test_built_in_objects_are_valid_kubernetes(
    rendered: dict[str, list[dict[str, Any]]], toggle: str, version: str
) -> None:
    for obj in rendered[toggle]:
        if obj["apiVersion"] != MONITORING:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("kind", ["PodMonitor", "PrometheusRule"])
def test_monitoring_objects_against_kubernetes_validate(
    rendered: dict[str, list[dict[str, Any]]], kind: str
) -> None:
    [obj] = of_kind(rendered["rules" if kind == "PrometheusRule" else "podmonitor"], kind)
    try:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        pytest.skip(
            f"kubernetes-validate ships only built-in schemas, not the Prometheus Operator's "
            f"{kind} CRD; test_prometheus_rule_structure and test_pod_monitor_* check it"
        )


def test_schema_rejects_bad_values() -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"dashboards": {"labelValue": "not valid!"}}, "/dashboards/labelValue"),
        ({"dashboards": {"namespace": "Monitoring"}}, "/dashboards/namespace"),
        ({"prometheusRule": {"slaAtRisk": {"severity": "page"}}}, "/prometheusRule/slaAtRisk"),
        ({"prometheusRule": {"stuckQueued": {"window": "30 minutes"}}}, "window"),
        ({"prometheusRule": {"runbookBaseUrl": "docs/troubleshooting.md"}}, "runbookBaseUrl"),
        ({"podMonitor": {"port": 0}}, "/podMonitor/port"),
        ({"podMonitor": {"portName": "Metrics_Port"}}, "/podMonitor/portName"),
        ({"podMonitor": {"intervall": "1m"}}, "intervall"),
    ]
    with helm.Chart.load(CHART) as chart:
        for values, where in bad:
            with pytest.raises(helm.HelmValuesError) as info:
                chart.validate_schema(values)
            assert where in str(info.value), values


# --- the dashboard -----------------------------------------------------------------------------


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels += panel.get("panels", [])
    return panels


def test_dashboard_configmap(rendered: dict[str, list[dict[str, Any]]]) -> None:
    configmap = one(rendered["dashboards"], "ConfigMap", f"{FULL}-dashboard")
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in configmap["metadata"]
    # The sidecar writes each data key to a file: the key is the dashboard's file name.
    assert list(configmap["data"]) == ["llmbatch.json"]
    assert json.loads(configmap["data"]["llmbatch.json"]) == json.loads(DASHBOARD_FILE.read_text())

    custom = one(rendered["dashboards-custom"], "ConfigMap", f"{FULL}-dashboard")
    assert custom["metadata"]["namespace"] == "monitoring"
    assert custom["metadata"]["labels"]["example.org/dashboard"] == "yes"
    assert "grafana_dashboard" not in custom["metadata"]["labels"]
    assert custom["metadata"]["annotations"] == {"grafana_folder": "LLM"}


def test_dashboard_json() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] == "llmbatch-overview"
    assert dashboard["title"]
    assert "id" not in dashboard or dashboard["id"] is None  # Grafana assigns it
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["description"], f"{panel['title']!r} explains nothing"
        assert panel["targets"], f"{panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            # Any Prometheus data source the user picks, not one uid of our Grafana.
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    by_title = {p["title"]: p for p in dashboard_panels(dashboard)}
    wanted = {
        "BatchJobs by phase": "llmbatch_batchjobs",
        "Requests per second": "llmbatch_requests_completed_total",
        "Tokens per second": "llmbatch_tokens_completed_total",
        "SLA at risk": "llmbatch_sla_at_risk",
        "ETA versus deadline": "llmbatch_batchjob_eta_timestamp_seconds",
        "Runner GPU utilisation": "DCGM_FI_DEV_GPU_UTIL",
    }
    for title, metric in wanted.items():
        assert title in by_title, title
        assert any(metric in t["expr"] for t in by_title[title]["targets"]), title


# --- the alerts --------------------------------------------------------------------------------


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def alerts_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    [rule] = of_kind(objects, "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_prometheus_rule_structure(rendered: dict[str, list[dict[str, Any]]]) -> None:
    [rule] = of_kind(rendered["rules"], "PrometheusRule")
    assert rule["apiVersion"] == MONITORING
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
    alerts = alerts_of(rendered["rules"])
    assert set(alerts) == {"BatchJobSLAAtRisk", "BatchJobFailed", "BatchJobStuckQueued"}
    anchors = github_anchors(TROUBLESHOOTING.read_text())
    for name, alert in alerts.items():
        assert set(alert) == {"alert", "expr", "for", "labels", "annotations"}, name
        # Parses and type-checks as PromQL (the metric names: test_metric_references.py).
        parse_promql(alert["expr"])
        assert DURATION.match(alert["for"]), name
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}, name
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        # Prometheus, not Helm, fills in the value.
        assert "{{ $value }}" in annotations["description"], name
        base, _, anchor = annotations["runbook_url"].partition("#")
        assert base.endswith("docs/troubleshooting.md"), name
        assert anchor in anchors, f"{name}: no heading #{anchor} in docs/troubleshooting.md"
    assert alerts["BatchJobSLAAtRisk"]["for"] == "15m"
    assert "30m" in alerts["BatchJobStuckQueued"]["expr"]


def test_prometheus_rule_values(rendered: dict[str, list[dict[str, Any]]]) -> None:
    [rule] = of_kind(rendered["rules-custom"], "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    alerts = alerts_of(rendered["rules-custom"])
    assert alerts["BatchJobSLAAtRisk"]["for"] == "5m"
    assert alerts["BatchJobSLAAtRisk"]["labels"] == {"severity": "critical", "team": "ml"}
    assert alerts["BatchJobFailed"]["labels"] == {"severity": "info", "team": "ml"}
    assert alerts["BatchJobFailed"]["for"] == "0s"
    stuck = alerts["BatchJobStuckQueued"]
    assert stuck["for"] == "10m"
    assert "[2h:1m]" in stuck["expr"] and "[2h]" in stuck["expr"] and "offset 2h" in stuck["expr"]
    assert "30m" not in stuck["expr"]
    for alert in alerts.values():
        assert alert["annotations"]["runbook_url"].startswith(
            "https://docs.example.org/troubleshooting#"
        )


# --- the PodMonitor ----------------------------------------------------------------------------


def example_batchjob() -> dict[str, Any]:
    return {
        "apiVersion": "llmbatch.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {
            "name": "demo",
            "namespace": "team-a",
            "uid": "uid-1",
            "creationTimestamp": "2026-01-01T12:00:00Z",
        },
        "spec": {
            "model": {"name": "tiny-qwen", "source": "/models/tiny"},
            "input": "s3://llmbatch/in/demo.jsonl",
            "output": "s3://llmbatch/out/demo/",
            "parallelism": 2,
        },
    }


def pod_labels_and_container(job: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    template = job["spec"]["template"]
    [container] = template["spec"]["containers"]
    return template["metadata"]["labels"], container


def test_pod_monitor_selects_the_run_pods_the_operator_builds(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    [monitor] = of_kind(rendered["podmonitor"], "PodMonitor")
    assert monitor["apiVersion"] == MONITORING
    assert set(monitor["spec"]) == {"namespaceSelector", "selector", "podMetricsEndpoints"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    run_labels, container = pod_labels_and_container(
        build_runner_job(example_batchjob(), OperatorConfig(), now)
    )
    finalize_labels, _ = pod_labels_and_container(
        build_finalize_job(example_batchjob(), OperatorConfig(), "none")
    )
    assert selector.items() <= run_labels.items()
    # The finalize pod runs the same image but serves no metrics.
    assert not selector.items() <= finalize_labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"any": True}

    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
    relabelings = endpoint["relabelings"]
    for relabeling in relabelings:
        assert set(relabeling) <= {
            "sourceLabels",
            "regex",
            "targetLabel",
            "replacement",
            "action",
        }
        assert relabeling["action"] in {"keep", "replace"}
    if any(p.get("name") for p in container.get("ports", [])):
        pytest.fail("the runner container now names its port: make podMonitor.portName default")
    # Without a named port: keep the runner container, address it at the runner's port.
    assert "port" not in endpoint
    [keep] = [r for r in relabelings if r["action"] == "keep"]
    assert keep["sourceLabels"] == ["__meta_kubernetes_pod_container_name"]
    assert re.fullmatch(keep["regex"], container["name"]) and container["name"] == RUNNER_CONTAINER
    [address] = [r for r in relabelings if r.get("targetLabel") == "__address__"]
    assert address["replacement"] == f"${{1}}:{RUNNER_METRICS_PORT}"


def test_pod_monitor_names_the_batchjob(rendered: dict[str, list[dict[str, Any]]]) -> None:
    [monitor] = of_kind(rendered["podmonitor"], "PodMonitor")
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    [batchjob] = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "batchjob"]
    # Prometheus turns every character of a label name that is not [a-zA-Z0-9_] into "_".
    meta = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", BATCHJOB_LABEL)
    assert batchjob["sourceLabels"] == [meta]


def test_pod_monitor_with_a_named_port_and_watched_namespaces(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    [monitor] = of_kind(rendered["podmonitor-named-port"], "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert not [r for r in endpoint["relabelings"] if r.get("targetLabel") == "__address__"]

    [namespaced] = of_kind(rendered["podmonitor-namespaced"], "PodMonitor")
    assert namespaced["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_runner_metrics_port_default_matches_the_cli() -> None:
    # The PodMonitor's port default is the runner's; both must move together.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podMonitor"]["port"] == RUNNER_METRICS_PORT
    cli = (ROOT / "operator" / "llmbatch" / "runner" / "cli.py").read_text()
    assert f'_env_int("LLMBATCH_RUNNER_METRICS_PORT", {RUNNER_METRICS_PORT})' in cli


def test_chart_files_include_the_dashboard() -> None:
    # .helmignore must not drop the dashboard, or the ConfigMap template fails to render.
    ignore = CHART / ".helmignore"
    patterns = ignore.read_text().split() if ignore.exists() else []
    assert not [p for p in patterns if Path("dashboards/llmbatch.json").match(p)]


# --- the alerts, evaluated by Prometheus's own rule tester --------------------------------------

PROMTOOL = shutil.which("promtool")


def expected_alert(rule: dict[str, Any], value: str) -> dict[str, Any]:
    annotations = dict(rule["annotations"])
    annotations["description"] = annotations["description"].replace("{{ $value }}", value)
    return {"exp_labels": rule["labels"], "exp_annotations": annotations}


def alert_cases(rules: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Scenarios on a 1-minute grid (window 30m, for 15m, as the defaults)."""
    sla, failed, stuck = (
        rules[n] for n in ("BatchJobSLAAtRisk", "BatchJobFailed", "BatchJobStuckQueued")
    )
    queued = 'llmbatch_batchjobs{phase="Queued"}'
    out_of_queued = 'llmbatch_phase_transitions_total{from="Queued",to="Running"}'

    def case(
        series: dict[str, str], checks: list[tuple[str, str, list[dict[str, Any]]]]
    ) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [
                {"eval_time": at, "alertname": name, "exp_alerts": alerts}
                for at, name, alerts in checks
            ],
        }

    return [
        # At risk from minute 10: pending 15 minutes, then firing with the count.
        case(
            {"llmbatch_sla_at_risk": "0x10 2x40"},
            [
                ("20m", "BatchJobSLAAtRisk", []),
                ("30m", "BatchJobSLAAtRisk", [expected_alert(sla, "2")]),
            ],
        ),
        case(
            {'llmbatch_batchjobs{phase="Failed"}': "0x5 1x20 0x10"},
            [
                ("4m", "BatchJobFailed", []),
                ("8m", "BatchJobFailed", [expected_alert(failed, "1")]),
                ("34m", "BatchJobFailed", []),  # deleted
            ],
        ),
        # Queued from the start and nothing leaves: window 30m + for 15m.
        case(
            {queued: "1x120"},
            [
                ("40m", "BatchJobStuckQueued", []),
                ("50m", "BatchJobStuckQueued", [expected_alert(stuck, "1")]),
            ],
        ),
        # A moving queue: something leaves Queued every 10 minutes.
        case(
            {queued: "1x120", out_of_queued: " ".join(f"{i}x9" for i in range(12))},
            [("60m", "BatchJobStuckQueued", []), ("110m", "BatchJobStuckQueued", [])],
        ),
        # The first transition ever (a new counter series at 40m) counts as leaving Queued.
        case(
            {queued: "1x120", out_of_queued: "_x40 1x80"},
            [
                ("45m", "BatchJobStuckQueued", []),
                ("80m", "BatchJobStuckQueued", []),
                ("90m", "BatchJobStuckQueued", [expected_alert(stuck, "1")]),
            ],
        ),
        # Queued seen only since minute 60 (an operator restart): a full window first.
        case(
            {queued: "_x60 1x60"},
            [
                ("80m", "BatchJobStuckQueued", []),
                ("110m", "BatchJobStuckQueued", [expected_alert(stuck, "1")]),
            ],
        ),
    ]


@pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian/Ubuntu package prometheus); it evaluates the alerts",
)
def test_alerts_fire_when_they_should(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    assert PROMTOOL is not None
    [rule] = of_kind(rendered["rules"], "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", "rules.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    suite = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": alert_cases(alerts_of(rendered["rules"])),
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_service_monitor_keeps_the_batchjob_namespace() -> None:
    # llmbatch_batchjob_*_timestamp_seconds{namespace,batchjob} name the BatchJob's namespace;
    # without honorLabels Prometheus would overwrite it with the operator pod's.
    [monitor] = of_kind(
        render({"metrics": {"serviceMonitor": {"enabled": True}}}), "ServiceMonitor"
    )
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
