"""Every metric that a dashboard, an alert, a chart template or a doc names is one the code
exports (operator, runner or gateway), or one of a short, explained list of metrics other
software exports (NVIDIA's dcgm-exporter) or the operator is still to export. A renamed metric
cannot leave a silent, empty Grafana panel or an alert that never fires."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llm-batch-operator"
METRIC = re.compile(r"\bllmbatch_[a-z0-9_]+\b")
# Where metric names are written down for people or for Prometheus/Grafana.
SCANNED = [ROOT / "charts", ROOT / "docs", ROOT / "examples"]
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}

# Metrics that other software exports: allowed in queries, never with the llmbatch_ prefix.
EXTERNAL: dict[str, str] = {
    "DCGM_FI_DEV_GPU_UTIL": "NVIDIA dcgm-exporter: GPU utilisation in percent",
    "DCGM_FI_DEV_FB_USED": "NVIDIA dcgm-exporter: framebuffer memory used in MiB",
}
# Metrics the dashboard queries before the code exports them. Each entry says what is
# missing; test_pending_metrics_are_still_missing fails once the code exports one, so the
# entry is removed instead of hiding a later rename.
PENDING: dict[str, str] = {
    "llmbatch_batchjob_eta_timestamp_seconds": (
        "pending: operator gauge {namespace,batchjob} = status.eta as a Unix time, for the "
        "'ETA versus deadline' panel"
    ),
    "llmbatch_batchjob_deadline_timestamp_seconds": (
        "pending: operator gauge {namespace,batchjob} = status.deadline as a Unix time, for "
        "the 'ETA versus deadline' panel"
    ),
}


def _sample_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def _registries() -> list[CollectorRegistry]:
    import llmbatch.controller.metrics  # noqa: F401 - registers on the default registry
    from llmbatch.gateway.observability import Metrics
    from llmbatch.runner.metrics import RunnerMetrics

    return [REGISTRY, RunnerMetrics("batch", 0).registry, Metrics().registry]


def exported() -> set[str]:
    """Sample names of every llmbatch metric the code defines: what a query can select."""
    names = set().union(*(_sample_names(registry) for registry in _registries()))
    return {name for name in names if name.startswith("llmbatch_")}


def families() -> set[str]:
    """Names of histograms and summaries without their sample suffixes, which prose may use
    for the whole family (a counter is named with its _total, as Prometheus stores it)."""
    names = {
        family.name
        for registry in _registries()
        for family in registry.collect()
        if family.type in ("histogram", "summary")
    }
    return {name for name in names if name.startswith("llmbatch_")}


def allowed() -> set[str]:
    return exported() | set(EXTERNAL) | set(PENDING)


def referenced() -> Iterator[tuple[Path, str]]:
    for base in SCANNED:
        for path in sorted(base.rglob("*")):
            if path.is_file() and path.suffix in {".yaml", ".yml", ".json", ".md", ".tpl", ".txt"}:
                for name in METRIC.findall(path.read_text(errors="replace")):
                    yield path, name


def test_the_code_exports_metrics() -> None:
    names = exported()
    for expected in (
        "llmbatch_batchjobs",
        "llmbatch_sla_at_risk",
        "llmbatch_runner_requests_total",
        "llmbatch_gateway_requests_total",
        "llmbatch_reconcile_duration_seconds_bucket",
    ):
        assert expected in names


def test_every_referenced_metric_is_exported() -> None:
    names = exported() | families() | set(PENDING)
    missing = sorted(
        {f"{path.relative_to(ROOT)}: {name}" for path, name in referenced() if name not in names}
    )
    assert not missing, "metrics named but not exported:\n" + "\n".join(missing)


def test_pending_metrics_are_still_missing() -> None:
    done = sorted(set(PENDING) & exported())
    assert not done, f"now exported, remove from PENDING: {done}"


def test_allow_lists_are_not_stale() -> None:
    # An entry nothing queries any more would let a future typo of the same name through.
    queried = {name for _, _, expr in all_queries() for name in metric_names(expr)}
    assert set(EXTERNAL) <= queried, set(EXTERNAL) - queried
    assert set(PENDING) <= queried, set(PENDING) - queried
    assert not {name for name in EXTERNAL if name.startswith("llmbatch_")}


# --- a small PromQL reader ---------------------------------------------------------------------

# Aggregations and functions of PromQL (Prometheus 3) plus what Grafana's query editor adds.
_FUNCTION_WORDS = """
sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count histogram_fraction
histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters
double_exponential_smoothing hour idelta increase irate label_join label_replace ln log2 log10
minute month predict_linear rate resets round scalar sgn sort sort_desc sort_by_label
sort_by_label_desc sqrt time timestamp vector year avg_over_time min_over_time max_over_time
sum_over_time count_over_time quantile_over_time stddev_over_time stdvar_over_time
last_over_time present_over_time mad_over_time acos acosh asin asinh atan atanh cos cosh sin
sinh tan tanh deg pi rad info start end
"""
_KEYWORD_WORDS = "and or unless bool atan2 inf nan group_left group_right"
FUNCTIONS = frozenset(_FUNCTION_WORDS.split())
KEYWORDS = frozenset(_KEYWORD_WORDS.split())
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\[\[[^\]]*\]\]|\$[A-Za-z_][A-Za-z0-9_]*")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+", re.IGNORECASE)
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_TOKEN = re.compile(
    r"(?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
    r"|(?P<other>\S)"
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables allowed).

    Raises ValueError on a call of an unknown function, so a typo there is not read as a
    metric name either."""
    text = _STRINGS.sub('""', expr)
    text = _GRAFANA_VARIABLES.sub("0", text)
    names: set[str] = set()
    # {__name__="..."} selectors name a metric inside the matchers.
    names.update(re.findall(r'__name__\s*=\s*"([A-Za-z_:][A-Za-z0-9_:]*)"', expr))
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    for match in _TOKEN.finditer(text):
        name = match.group("name")
        if name is None or name.lower() in KEYWORDS:
            continue
        if match.group("call"):
            if name not in FUNCTIONS:
                raise ValueError(f"unknown PromQL function {name!r} in {expr!r}")
        else:
            names.add(name)
    return names


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<args>.*)\)\s*$", re.DOTALL)


def variable_metric_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query (label_values, query_result)."""
    match = _LABEL_VALUES.match(query)
    if match:
        args = match.group("args")
        # label_values(label) names no metric; label_values(selector, label) does.
        selector, _, _label = args.rpartition(",")
        return metric_names(selector) if selector.strip() else set()
    inner = re.match(r"^\s*query_result\((.*)\)\s*$", query, re.DOTALL)
    if inner:
        return metric_names(inner.group(1))
    if re.match(r"^\s*(label_names|metrics)\(", query):
        return set()
    return metric_names(query)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum by (phase) (llmbatch_batchjobs)", {"llmbatch_batchjobs"}),
        (
            'sum(rate(llmbatch_runner_requests_total{namespace=~"$namespace"}[$__rate_interval]))'
            " by (outcome)",
            {"llmbatch_runner_requests_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) > 1e3",
            {"x_bucket"},
        ),
        (
            'a - on (namespace, batchjob) group_left(pod) b{c="d"} offset 1h unless ignoring(x) c',
            {"a", "b", "c"},
        ),
        (
            'label_replace(up, "dst", "sum(fake)", "src", "(.*)") and bool DCGM_FI_DEV_GPU_UTIL',
            {"up", "DCGM_FI_DEV_GPU_UTIL"},
        ),
        ('{__name__="llmbatch_sla_at_risk"}', {"llmbatch_sla_at_risk"}),
        ("min_over_time(sum(q{phase='Queued'})[30m:1m]) > 0", {"q"}),
        ("vector(0) or time() - 3 * inf", set()),
    ],
)
def test_metric_names_reads_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_metric_names_rejects_an_unknown_function() -> None:
    with pytest.raises(ValueError, match="ratee"):
        metric_names("sum(ratee(llmbatch_status_patches_total[5m]))")


def test_variable_queries() -> None:
    assert variable_metric_names("label_values(llmbatch_runner_requests_total, namespace)") == {
        "llmbatch_runner_requests_total"
    }
    assert variable_metric_names("label_values(namespace)") == set()
    assert variable_metric_names("query_result(topk(3, llmbatch_batchjobs))") == {
        "llmbatch_batchjobs"
    }


# --- the dashboard and the alerts ---------------------------------------------------------------


def _dashboards() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "charts").rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "panels" in data:
            found.append((path, data))
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        # A collapsed row carries its panels inside itself.
        yield from _panels(panel.get("panels", []))


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(file, where, PromQL) for every query of every dashboard in the chart."""
    for path, dashboard in _dashboards():
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                yield path.name, f"panel {panel.get('title')!r}", target.get("expr", "")
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            for name in sorted(variable_metric_names(text)):
                yield path.name, f"variable {variable['name']!r}", name
        for annotation in dashboard.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                yield path.name, f"annotation {annotation.get('name')!r}", annotation["expr"]


def rule_queries() -> Iterator[tuple[str, str, str]]:
    """(file, where, PromQL) for every rule of the chart's PrometheusRule."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(
            {"prometheusRule": {"enabled": True}},
            name="llmbatch",
            namespace="llmbatch-system",
            is_install=True,
        )
    for path, text in manifests.items():
        for doc in yaml.safe_load_all(text) if path.endswith(".yaml") else []:
            if not doc or doc.get("kind") != "PrometheusRule":
                continue
            for group in doc["spec"]["groups"]:
                for rule in group["rules"]:
                    where = f"rule {rule.get('alert') or rule.get('record')!r}"
                    yield Path(path).name, where, rule["expr"]


def all_queries() -> list[tuple[str, str, str]]:
    return [*dashboard_queries(), *rule_queries()]


def test_the_chart_has_a_dashboard_and_alerts() -> None:
    files = {file for file, _, _ in all_queries()}
    assert "llmbatch.json" in files
    assert "prometheusrule.yaml" in files


def test_dashboard_panels_query_our_metrics() -> None:
    dashboards = _dashboards()
    assert dashboards, "the chart has no Grafana dashboard JSON"
    for path, dashboard in dashboards:
        for panel in _panels(dashboard["panels"]):
            if panel.get("type") == "row":
                continue
            exprs = [t.get("expr", "") for t in panel.get("targets", [])]
            assert exprs and all(exprs), f"{path.name}: panel {panel.get('title')!r} has no query"


def test_every_queried_metric_is_exported_or_listed() -> None:
    names = allowed()
    missing = []
    for file, where, expr in all_queries():
        selected = metric_names(expr)
        assert selected, f"{file}: {where} selects no metric: {expr!r}"
        missing += [f"{file}: {where}: {name}" for name in sorted(selected - names)]
    assert not missing, "queried but nobody exports:\n" + "\n".join(missing)


def test_a_renamed_metric_would_be_caught() -> None:
    # A control for the test above: the same check on a misspelt query finds the name.
    expr = "sum by (phase) (llmbatch_batchjob)"
    assert metric_names(expr) - allowed() == {"llmbatch_batchjob"}
