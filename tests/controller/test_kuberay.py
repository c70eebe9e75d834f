"""What a KubeRay RayJob and its pods say, read into the JobView the policies read of the run
Job: KubeRay's states (as ray-operator/controllers/ray/rayjob_controller.go writes them), the
runner's exit code in the Ray job's message, and the pods found by our labels."""

from __future__ import annotations

from typing import Any

import pytest

from llmbatch.api.timefmt import format_time
from llmbatch.controller.kuberay import (
    entrypoint_exit_code,
    pod_labels,
    rayjob_outcome,
    view_rayjob,
)
from tests.controller.factories import at

LOG = "Job entrypoint command failed with exit code {code}, last available logs (truncated):\n"


def rayjob(
    deployment: str = "",
    job: str = "",
    *,
    suspend: bool = False,
    reason: str = "",
    message: str = "",
    failed: int | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"jobDeploymentStatus": deployment, "jobStatus": job}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if failed is not None:
        status["failed"] = failed
    return {"metadata": {"name": "demo-ray"}, "spec": {"suspend": suspend}, "status": status}


def ray_pod(
    container: str = "ray-worker",
    phase: str = "Running",
    started: float = 1.0,
    limits: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A head or worker pod; ``limits``: its container's resource limits (None: the pod as
    the tests' API gives it, without a spec)."""
    state = {"running": {"startedAt": format_time(at(started))}} if phase == "Running" else {}
    pod: dict[str, Any] = {
        "metadata": {"name": f"demo-{container}", "labels": pod_labels("demo")},
        "status": {"phase": phase, "containerStatuses": [{"name": container, "state": state}]},
    }
    if limits is not None:
        resources = {"limits": limits} if limits else {}
        pod["spec"] = {"containers": [{"name": container, "resources": resources}]}
    return pod


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ({}, "Pending"),
        ({"jobDeploymentStatus": "Initializing"}, "Pending"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "PENDING"}, "Pending"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, "Running"),
        # The Ray job ended; KubeRay concludes once its submitter finished too.
        ({"jobDeploymentStatus": "Running", "jobStatus": "SUCCEEDED"}, "Running"),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, "Succeeded"),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}, "Failed"),
        ({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}, "Failed"),
        ({"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded"}, "Failed"),
        # Within backoffLimit KubeRay retries on a new cluster: not a failure yet.
        ({"jobDeploymentStatus": "Retrying", "jobStatus": "FAILED"}, "Pending"),
        ({"jobDeploymentStatus": "Suspending"}, "Pending"),
        ({"jobDeploymentStatus": "Suspended"}, "Pending"),
    ],
)
def test_kuberays_states_map_onto_ours(status: dict[str, Any], state: str) -> None:
    assert rayjob_outcome({"status": status}).state == state


def test_a_failure_says_kuberays_reason_and_the_first_line_of_its_message() -> None:
    outcome = rayjob_outcome(
        rayjob("Failed", "FAILED", reason="AppFailed", message=LOG.format(code=1) + "q" * 5000)
    )
    assert outcome.message.startswith("AppFailed: Job entrypoint command failed with exit code 1")
    assert outcome.message.endswith("(truncated)")  # the log is not in it
    assert rayjob_outcome(rayjob("Failed", reason="DeadlineExceeded")).message == (
        "DeadlineExceeded"
    )


def test_the_runners_exit_code_is_read_from_rays_message() -> None:
    assert entrypoint_exit_code(LOG.format(code=42)) == 42
    # Older Ray writes a full stop after the code.
    assert entrypoint_exit_code("Job entrypoint command failed with exit code 43. No logs.") == 43
    assert entrypoint_exit_code("Job finished successfully.") is None
    assert entrypoint_exit_code("") is None


def test_no_rayjob_is_no_run_child() -> None:
    assert not view_rayjob(None).exists


def test_a_running_rayjob_is_shard_0_running_with_its_pods() -> None:
    pods = [ray_pod("ray-head"), ray_pod("ray-worker", started=2.0), ray_pod("ray-worker")]
    view = view_rayjob(rayjob("Running", "RUNNING"), pods)
    assert view.exists and not view.suspended and not view.finished
    assert view.running_indexes == {0} and view.running_pods == 3 and view.active == 1
    assert view.state == "Running, Ray job RUNNING"
    # Every Ray pod's running time, with its role: the GPUs each holds are counted per pod.
    assert sorted((span.container, span.start) for span in view.pod_spans) == [
        ("ray-head", at(1.0)),
        ("ray-worker", at(1.0)),
        ("ray-worker", at(2.0)),
    ]


def test_the_cluster_counts_as_active_until_kuberay_says_suspended() -> None:
    for deployment in ("Initializing", "Running", "Suspending", "Retrying"):
        assert view_rayjob(rayjob(deployment, suspend=True)).has_live_pods, deployment
    for deployment in ("", "Suspended", "Complete", "Failed"):
        assert not view_rayjob(rayjob(deployment, suspend=True)).has_live_pods, deployment
    # Pods of ours still terminating keep a stop waiting whatever KubeRay says.
    view = view_rayjob(rayjob("Suspended", suspend=True), [ray_pod(phase="Running")])
    assert view.suspended and view.has_live_pods


def test_complete_and_succeeded_is_shard_0_complete() -> None:
    view = view_rayjob(rayjob("Complete", "SUCCEEDED"))
    assert view.complete and view.finished and view.completed_indexes == {0}
    assert not view.failed and not view.failed_indexes


def test_a_failed_rayjob_carries_kuberays_reason_message_and_retries() -> None:
    message = LOG.format(code=1) + "loading the model\nRuntimeError: CUDA out of memory\n"
    view = view_rayjob(rayjob("Failed", "FAILED", reason="AppFailed", message=message, failed=3))
    assert view.failed and view.failed_indexes == {0}
    assert view.failed_reason == "AppFailed"
    assert view.failed_message.startswith("AppFailed: Job entrypoint command failed")
    assert view.termination_message.endswith("RuntimeError: CUDA out of memory")
    assert view.exit_codes == {1} and not view.permanent_error
    assert view.restarts == {0: 3}


def test_a_permanent_error_fails_the_shard_while_kuberay_would_retry() -> None:
    view = view_rayjob(rayjob("Retrying", "FAILED", message=LOG.format(code=42)))
    assert not view.failed and view.failed_indexes == {0}
    assert view.permanent_error
    # Any other exit code leaves the retry to KubeRay.
    assert not view_rayjob(rayjob("Retrying", "FAILED", message=LOG.format(code=1))).failed_indexes


def test_the_deadline_is_signalled_by_exit_43_or_kuberays_deadline() -> None:
    assert view_rayjob(rayjob("Retrying", "FAILED", message=LOG.format(code=43))).expired_signal
    assert view_rayjob(rayjob("Failed", reason="DeadlineExceeded")).expired_signal
    assert not view_rayjob(rayjob("Failed", "FAILED", reason="AppFailed")).expired_signal
