"""Runs examples/gitops/argocd-health.lua the way Argo CD does (a global ``obj``, the script's
return value is the health) with lupa, over every BatchJob phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmbatch.api.phases import Phase

lupa = pytest.importorskip("lupa", reason="lupa (Lua for Python) is in the dev extra")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (ROOT / "examples" / "gitops" / "argocd-health.lua").read_text()

EXPECTED: dict[Phase, str] = {
    Phase.SUCCEEDED: "Healthy",
    Phase.FAILED: "Degraded",
    Phase.EXPIRED: "Degraded",
    Phase.VALIDATING: "Progressing",
    Phase.QUEUED: "Progressing",
    Phase.RUNNING: "Progressing",
    Phase.FINALIZING: "Progressing",
    Phase.CANCELLING: "Progressing",
    Phase.SUSPENDED: "Suspended",
    Phase.CANCELLED: "Degraded",  # without spec.cancel; see test_cancel_declared_in_git
}


def health(obj: dict[str, Any]) -> dict[str, str]:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    # Argo CD's sandbox offers no os/io; make sure the script does not rely on them.
    runtime.execute("os = nil; io = nil")
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(SCRIPT)
    return {str(k): str(v) for k, v in dict(result).items()}


def batchjob(
    status: dict[str, Any] | None, cancel: bool = False, generation: int = 1
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "llmbatch.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {"name": "b", "namespace": "default", "generation": generation},
        "spec": {"cancel": cancel, "input": "s3://b/in.jsonl", "output": "s3://b/out"},
    }
    if status is not None:
        obj["status"] = status
    return obj


def test_every_phase_is_mapped() -> None:
    assert set(EXPECTED) == set(Phase)


@pytest.mark.parametrize("phase", list(Phase))
def test_phase_health(phase: Phase) -> None:
    result = health(batchjob({"phase": phase.value, "observedGeneration": 1}))
    assert result["status"] == EXPECTED[phase]
    assert result["message"].startswith(phase.value)


def test_missing_status_is_progressing() -> None:
    result = health(batchjob(None))
    assert result["status"] == "Progressing"
    assert "operator" in result["message"]


def test_status_without_phase_is_progressing() -> None:
    assert health(batchjob({"conditions": []}))["status"] == "Progressing"


def test_cancel_declared_in_git_is_healthy() -> None:
    result = health(batchjob({"phase": "Cancelled", "progress": "3/10"}, cancel=True))
    assert result == {"status": "Healthy", "message": "Cancelled: 3/10 requests"}


def test_message_carries_progress_and_status_message() -> None:
    status = {"phase": "Running", "progress": "412/1000", "message": "2 of 4 shards running"}
    result = health(batchjob(status))
    assert result == {
        "status": "Progressing",
        "message": "Running: 412/1000 requests; 2 of 4 shards running",
    }


def test_reason_used_when_there_is_no_message() -> None:
    result = health(batchjob({"phase": "Failed", "reason": "BackoffLimitExceeded"}))
    assert result == {"status": "Degraded", "message": "Failed: BackoffLimitExceeded"}


def test_sla_at_risk_is_called_out() -> None:
    def status(at_risk: str) -> dict[str, Any]:
        return {
            "phase": "Running",
            "conditions": [
                {"type": "Running", "status": "True"},
                {"type": "SLAAtRisk", "status": at_risk, "reason": "EtaPastDeadline"},
            ],
        }

    assert "SLA at risk" in health(batchjob(status("True")))["message"]
    assert "SLA at risk" not in health(batchjob(status("False")))["message"]


def test_stale_status_is_progressing() -> None:
    result = health(batchjob({"phase": "Succeeded", "observedGeneration": 1}, generation=2))
    assert result["status"] == "Progressing"
    assert "generation 2" in result["message"]


def test_unknown_phase_is_unknown() -> None:
    assert health(batchjob({"phase": "Exploded"}))["status"] == "Unknown"


def test_argocd_cm_patch_embeds_the_script_verbatim() -> None:
    patch = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd-cm-patch.yaml").read_text())
    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"]["resource.customizations.health.llmbatch.io_BatchJob"] == SCRIPT
