"""Every metric that a dashboard, an alert, a chart template or a doc names is one the code
exports (operator, runner or gateway), or one of a short, explained list of metrics other
software exports (NVIDIA's dcgm-exporter) or the operator is still to export. A renamed metric
cannot leave a silent, empty Grafana panel or an alert that never fires."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

from llmbatch.api.phases import Phase

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
# Empty now: the ETA and deadline gauges of the "ETA versus deadline" panel were pending until
# the operator exported them.
PENDING: dict[str, str] = {}
# Names with the llmbatch_ prefix that are not metrics.
NOT_METRICS: dict[str, str] = {
    "llmbatch_sandbox": "the sandbox's Python package (sandbox/llmbatch_sandbox)",
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
                    if name not in NOT_METRICS:
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


# --- reading PromQL ------------------------------------------------------------------------------

# Grafana's interval variables, and any other variable (ours sit inside label matcher strings).
_GRAFANA_INTERVALS = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{__[a-z_]+\}")
_GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\[\[[^\]]*\]\]|\$[A-Za-z_][A-Za-z0-9_]*")


def parse(expr: str) -> promql_parser.Expr:
    """Parse (and type-check) PromQL, with Grafana's variables replaced by sample values."""
    text = _GRAFANA_INTERVALS.sub("5m", expr)
    text = _GRAFANA_VARIABLES.sub("x", text)
    return promql_parser.parse(text)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects. Raises ValueError when it does not parse
    or selects series by something other than a fixed name."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if not isinstance(node, promql_parser.VectorSelector):
            return
        if node.name:
            names.add(node.name)
            return
        fixed = [
            m.value
            for m in node.matchers.matchers
            if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
        ]
        if len(fixed) != 1 or node.matchers.or_matchers:
            raise ValueError(f"{expr!r}: a selector without one fixed metric name")
        names.add(fixed[0])

    promql_parser.walk(parse(expr), visit)
    return names


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<args>.*)\)\s*$", re.DOTALL)


def variable_metric_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query (label_values, query_result)."""
    match = _LABEL_VALUES.match(query)
    if match:
        # label_values(label) names no metric; label_values(selector, label) does.
        selector, _, _label = match.group("args").rpartition(",")
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
        ("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) > 1e3", {"x_bucket"}),
        (
            'a - on (namespace, batchjob) group_left(pod) b{c="d"} offset 1h unless ignoring(x) c',
            {"a", "b", "c"},
        ),
        (
            'label_replace(up, "dst", "sum(fake)", "src", "(.*)") > bool DCGM_FI_DEV_GPU_UTIL',
            {"up", "DCGM_FI_DEV_GPU_UTIL"},
        ),
        ('{__name__="llmbatch_sla_at_risk"}', {"llmbatch_sla_at_risk"}),
        ("min_over_time(sum(q{phase='Queued'})[30m:1m]) > 0", {"q"}),
        ("vector(0) or vector(time() - 3)", set()),
    ],
)
def test_metric_names_reads_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    "expr",
    [
        "sum(ratee(llmbatch_status_patches_total[5m]))",  # no such function
        "rate(llmbatch_status_patches_total)",  # rate needs a range
        "sum(llmbatch_batchjobs",  # unbalanced
        '{__name__=~"llmbatch_.*"}',  # no fixed name to check
    ],
)
def test_metric_names_rejects_bad_queries(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_names(expr)


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


# --- labels --------------------------------------------------------------------------------------

# Labels Prometheus adds when it scrapes (job, instance; the Prometheus Operator's namespace,
# pod, container, service, endpoint) and the chart's PodMonitor adds to runner series.
SCRAPE_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "container", "service", "endpoint", "batchjob"}
)
# Labels whose values are BatchJob phases ("from" is empty on a BatchJob's first transition).
PHASE_LABELS = frozenset({"phase", "from", "to"})


def label_names() -> dict[str, frozenset[str]]:
    """Sample name -> the labels the code gives it (a histogram's _bucket adds le)."""
    found: dict[str, frozenset[str]] = {}
    for registry in _registries():
        # prometheus_client has no public way to list the label names of a metric that has no
        # child yet; a changed internal makes test_label_names_cover_every_metric fail.
        for collector, samples in registry._collector_to_names.items():
            labels = getattr(collector, "_labelnames", None)
            if labels is None:
                continue
            for sample in samples:
                extra = {"le"} if sample.endswith("_bucket") else set()
                found[sample] = frozenset(labels) | extra
    return found


def test_label_names_cover_every_metric() -> None:
    known = label_names()
    assert exported() <= set(known), exported() - set(known)
    assert known["llmbatch_batchjobs"] == {"phase"}
    assert known["llmbatch_reconcile_duration_seconds_bucket"] == {"le"}


def _selectors(node: promql_parser.Expr) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(child: promql_parser.Expr) -> None:
        if isinstance(child, promql_parser.VectorSelector):
            found.append(child)

    promql_parser.walk(node, visit)
    return found


def _phase_values(matcher: promql_parser.Matcher) -> list[str]:
    if matcher.op in (promql_parser.MatchOp.Equal, promql_parser.MatchOp.NotEqual):
        return [matcher.value]
    # A regex of plain alternatives ("Queued|Running"); anything fancier is not checked.
    if re.fullmatch(r"[A-Za-z|]*", matcher.value):
        return matcher.value.split("|")
    return []


def label_problems(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """Labels an expression matches or groups by that its metrics do not have, and phase
    values that are not phases."""
    phases = {phase.value for phase in Phase} | {""}
    problems: list[str] = []

    def labels_of(selector: promql_parser.VectorSelector) -> frozenset[str] | None:
        name = selector.name or next(
            (m.value for m in selector.matchers.matchers if m.name == "__name__"), None
        )
        return known.get(name) if name else None

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = labels_of(node)
            if labels is None:  # DCGM's or a pending metric: its labels are not ours to know
                return
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    continue
                if matcher.name not in labels | SCRAPE_LABELS:
                    problems.append(f"{node.name} has no label {matcher.name!r}")
                if matcher.name in PHASE_LABELS:
                    wrong = [v for v in _phase_values(matcher) if v not in phases]
                    if wrong:
                        problems.append(f"{node.name}{{{matcher.name}}}: not phases: {wrong}")
        elif (
            isinstance(node, promql_parser.AggregateExpr)
            and node.modifier is not None
            and node.modifier.type == promql_parser.AggModifierType.By
        ):
            inside = [labels_of(s) for s in _selectors(node.expr)]
            available = set(SCRAPE_LABELS)
            for labels in inside:
                if labels is None:
                    return
                available |= labels
            for label in node.modifier.labels:
                if label not in available:
                    problems.append(f"{node.op} by ({label}): none of its metrics has it")

    promql_parser.walk(parse(expr), visit)
    return problems


def test_queries_use_labels_the_metrics_have() -> None:
    known = label_names()
    problems = [
        f"{file}: {where}: {problem}"
        for file, where, expr in all_queries()
        if not where.startswith("variable")
        for problem in label_problems(expr, known)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum by (kind) (llmbatch_batchjobs)", "by (kind)"),
        ('llmbatch_batchjobs{state="Queued"}', "no label 'state'"),
        ('llmbatch_batchjobs{phase="Queueing"}', "not phases: ['Queueing']"),
        ('llmbatch_phase_transitions_total{to=~"Failed|Errored"}', "not phases: ['Errored']"),
    ],
)
def test_label_problems_are_found(expr: str, problem: str) -> None:
    problems = label_problems(expr, label_names())
    assert any(problem in p for p in problems), problems


def test_a_renamed_metric_would_be_caught() -> None:
    # A control for the test above: the same check on a misspelt query finds the name.
    expr = "sum by (phase) (llmbatch_batchjob)"
    assert metric_names(expr) - allowed() == {"llmbatch_batchjob"}


# --- the dashboard against a real Prometheus ---------------------------------------------------

PROMETHEUS = shutil.which("prometheus")

# Serves the operator's, a runner's and the gateway's metrics with every label the code sets,
# as the real code sets them, on one port.
_EXPORTER = """
import sys, time
from prometheus_client import REGISTRY, start_http_server
from llmbatch.controller import metrics as operator
from llmbatch.gateway.observability import Metrics
from llmbatch.runner.metrics import RunnerMetrics

runner, gateway = RunnerMetrics("demo", 0), Metrics()
REGISTRY.register(runner.registry)
REGISTRY.register(gateway.registry)
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
at_risk = [{"type": "SLAAtRisk", "status": "True"}]
step = 0
while True:
    step += 1
    counts = {"completed": 3 * step, "failed": step, "total": 1000}
    usage = {"promptTokens": 100 * step, "completionTokens": 40 * step}
    operator.TRACKER.observe(
        "running", {"phase": "Running", "conditions": at_risk, "requestCounts": counts,
                    "usage": usage, "eta": "2030-01-01T13:00:00Z",
                    "deadline": "2030-01-01T12:00:00Z"}, "team-a", "demo"
    )
    operator.TRACKER.observe("queued", {"phase": "Queued"})
    operator.TRACKER.observe("failed", {"phase": "Failed"})
    operator.TRANSITIONS.labels("Queued", "Running").inc()
    operator.RECONCILE_SECONDS.observe(0.02)
    operator.STATUS_PATCHES.inc()
    runner.finished(True, 100, 40)
    runner.finished(False, 10, 0)
    runner.throughput.set(140.0)
    runner.queue_depth.set(4)
    gateway.requests.labels("GET", "/v1/batches/{batch_id}", "200").inc()
    gateway.latency.labels("GET", "/v1/batches/{batch_id}").observe(0.01)
    gateway.rate_limited.labels("free").inc()
    time.sleep(0.3)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def _query(base: str, expr: str) -> list[Any]:
    answer = _get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus scraping the code's metrics every second; yields its URL."""
    assert PROMETHEUS is not None
    work = tmp_path_factory.mktemp("prometheus")
    target, web = _free_port(), _free_port()
    script = work / "exporter.py"
    script.write_text(_EXPORTER)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "llmbatch", "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    exporter = subprocess.Popen([sys.executable, str(script), str(target)])
    server = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{web}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "prometheus.log").open("w"),
    )
    base = f"http://127.0.0.1:{web}"
    try:
        _wait(lambda: _get(f"{base}/api/v1/query?query=up")["data"]["result"] != [], "ready")
        # rate() needs two scrapes inside its range.
        _wait(
            lambda: _query(base, "rate(llmbatch_status_patches_total[10s]) > 0") != [],
            "two scrapes",
        )
        yield base
    finally:
        for process in (server, exporter):
            process.terminate()
        for process in (server, exporter):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _as_prometheus_sees_it(expr: str) -> str:
    text = _GRAFANA_INTERVALS.sub("10s", expr)
    return text.replace("$namespace", ".*")


@pytest.mark.slow
@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus server is not installed (Debian/Ubuntu package prometheus)",
)
def test_every_dashboard_query_shows_data_from_the_code(prometheus: str) -> None:
    empty = []
    checked = 0
    for file, where, expr in dashboard_queries():
        if where.startswith("variable"):
            continue
        if metric_names(expr) & (set(EXTERNAL) | set(PENDING)):
            continue  # DCGM's and pending metrics are not the code's to show
        checked += 1
        if not _query(prometheus, _as_prometheus_sees_it(expr)):
            empty.append(f"{file}: {where}: {expr}")
    assert checked >= 15
    assert not empty, "no data for:\n" + "\n".join(empty)
    # The control: a query on a label value the code never sets finds nothing.
    assert _query(prometheus, 'llmbatch_runner_requests_total{outcome="complete"}') == []
