"""The Helm chart's manifests apply to the emulator as they would to a cluster (the kinds are
stored; no controller runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.sandbox.apiserver.conftest import Cluster
from tests.sandbox.apiserver.kubectl import kubectl

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "llm-batch-operator"


def test_chart_manifests_apply(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk renders the chart")
    if not (CHART / "Chart.yaml").exists():
        pytest.skip("the chart is not there yet")
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(
            {"gateway": {"enabled": True}}, name="apply-test", namespace=namespace, is_install=True
        )
    docs = [
        doc
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "ClusterRole"} <= kinds
    rendered = tmp_path / "chart.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    out = kubectl(cluster.kubeconfig, "apply", "-n", namespace, "-f", str(rendered)).stdout
    assert out.count(" created") == len(docs), out
    again = kubectl(cluster.kubeconfig, "apply", "-n", namespace, "-f", str(rendered)).stdout
    assert "created" not in again
    cluster_scoped = [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for doc in cluster_scoped:
        kubectl(cluster.kubeconfig, "delete", doc["kind"].lower(), doc["metadata"]["name"])
