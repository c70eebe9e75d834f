"""Every llmbatch_* metric that a dashboard, an alert, a chart template or a doc names is one
the code exports (operator, runner or gateway), so a renamed metric cannot leave a silent,
empty Grafana panel or an alert that never fires."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
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


def _sample_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def exported() -> set[str]:
    """Sample names of every llmbatch metric the code defines."""
    import llmbatch.controller.metrics  # noqa: F401 - registers on the default registry
    from llmbatch.gateway.observability import Metrics
    from llmbatch.runner.metrics import RunnerMetrics

    names = _sample_names(REGISTRY)
    names |= _sample_names(RunnerMetrics("batch", 0).registry)
    names |= _sample_names(Metrics().registry)
    return {name for name in names if name.startswith("llmbatch_")}


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
    ):
        assert expected in names


def test_every_referenced_metric_is_exported() -> None:
    names = exported()
    missing = sorted(
        {f"{path.relative_to(ROOT)}: {name}" for path, name in referenced() if name not in names}
    )
    assert not missing, "metrics named but not exported:\n" + "\n".join(missing)


def _dashboards() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "charts").rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "panels" in data:
            found.append((path, data))
    return found


def test_dashboard_panels_query_our_metrics() -> None:
    dashboards = _dashboards()
    if not dashboards:
        pytest.skip("the chart has no Grafana dashboard JSON yet")
    for path, dashboard in dashboards:
        for panel in dashboard["panels"]:
            if panel.get("type") == "row":
                continue
            exprs = [t.get("expr", "") for t in panel.get("targets", [])]
            assert exprs and all(exprs), f"{path.name}: panel {panel.get('title')!r} has no query"
