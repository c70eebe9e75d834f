"""The KubeRay form (spec.ray.workers) through the state machine: the batch is named for its
RayJob, the RayJob is created after the plan where the run Job would be, KubeRay's states map
onto our phases, and cancel, suspend, the deadline and failures act on the RayJob."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    CreateExtraRunJob,
    CreateFinalizeJob,
    CreateRunJob,
    SetRunJobSuspended,
)
from llmbatch.controller.decide import Decision, decide
from llmbatch.controller.kuberay import view_rayjob
from llmbatch.controller.observation import Observation
from llmbatch.controller.policy.fetch import fetch_plan
from llmbatch.controller.validation import check_spec
from tests.controller.factories import (
    MANIFEST,
    OK,
    PLAN,
    at,
    batchjob,
    condition,
    finalize_job,
    observed,
    progress,
    validated,
)
from tests.controller.test_kuberay import LOG, ray_pod, rayjob

RAY = {"backend": "ray", "ray": {"workers": 2}, "parallelism": 1}


def ray_batch(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return batchjob(status, **{**RAY, **spec})


def started(phase: str, **extra: Any) -> dict[str, Any]:
    """The status of a batch that started in the KubeRay form."""
    return validated(phase, jobName="demo-ray", planJobName="demo-plan", **extra)


def observe(
    body: dict[str, Any],
    minutes: float,
    ray: dict[str, Any] | None = None,
    pods: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> Observation:
    obs = observed(body, at(minutes), plan=PLAN, **kwargs)
    return replace(obs, run=view_rayjob(ray, pods or []))


def decided(
    status: dict[str, Any],
    minutes: float,
    ray: dict[str, Any] | None,
    pods: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> Decision:
    spec = {key: kwargs.pop(key) for key in list(kwargs) if key not in _OBSERVED}
    return decide(observe(ray_batch(status, **spec), minutes, ray, pods, **kwargs))


_OBSERVED = {"finalize", "manifest", "progress", "validation"}


# --- validation and naming ---------------------------------------------------------------------


def test_the_cluster_form_validates_and_names_its_rayjob() -> None:
    _, problems = check_spec(ray_batch()["spec"])
    assert problems == []
    first = decide(observed(ray_batch(), at(0.1), validation=OK))
    assert first.wire["jobName"] == "demo-ray"
    # Planning comes first, as for the run Job.
    assert first.phase == Phase.QUEUED and first.wire["reason"] == "Planning"
    one_pod = decide(observed(batchjob(backend="ray", parallelism=1), at(0.1), validation=OK))
    assert one_pod.wire["jobName"] == "demo-run"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"parallelism": 3}, "set spec.parallelism to 1"),
        ({"maxParallelism": 4}, "remove spec.maxParallelism"),
    ],
)
def test_shard_counts_are_refused_with_the_cluster_form(spec: dict[str, Any], words: str) -> None:
    body = ray_batch(**spec)
    _, problems = check_spec(body["spec"])
    assert len(problems) == 1 and words in problems[0]
    failed = decide(observed(body, at(0.1), validation=OK))
    assert failed.phase == Phase.FAILED and failed.wire["reason"] == "ValidationFailed"
    assert words in condition(failed.wire, "Validated")["message"]


def test_validation_asks_whether_kuberay_is_installed_only_for_the_cluster_form() -> None:
    assert fetch_plan(observed(ray_batch(), at(0.1))).kuberay
    assert not fetch_plan(observed(batchjob(backend="ray"), at(0.1))).kuberay
    # Named: the pass reads the RayJob, not the run Job.
    plan = fetch_plan(observed(ray_batch(started("Running")), at(1)))
    assert plan.rayjob and not plan.validate and not plan.kuberay
    assert not fetch_plan(observed(batchjob(validated("Running")), at(1))).rayjob


# --- running -------------------------------------------------------------------------------


def test_the_rayjob_is_created_after_the_plan_and_no_run_job() -> None:
    created = decided(started("Queued", reason="Planning"), 1, None)
    assert created.actions == [CreateRunJob()]
    assert created.phase == Phase.QUEUED and created.wire["reason"] == "JobCreated"
    assert (
        "RayJob demo-ray" in created.wire["message"] and "2 GPU worker" in created.wire["message"]
    )


def test_kuberay_starting_the_cluster_is_queued_with_its_state() -> None:
    pending = decided(started("Queued"), 2, rayjob("Initializing"))
    assert pending.phase == Phase.QUEUED and pending.wire["reason"] == "PodsPending"
    assert "Initializing" in pending.wire["message"] and pending.actions == []


def test_a_running_ray_job_is_running() -> None:
    pods = [ray_pod("ray-head"), ray_pod(), ray_pod()]
    running = decided(started("Queued"), 3, rayjob("Running", "RUNNING"), pods)
    assert running.phase == Phase.RUNNING and running.wire["reason"] == "PodsRunning"
    assert "3 Ray pod(s) running" in running.wire["message"]
    assert running.actions == []
    # A retry on a new cluster keeps the batch Running.
    retrying = decided(
        started("Running"), 4, rayjob("Retrying", "FAILED", message=LOG.format(code=1))
    )
    assert retrying.phase == Phase.RUNNING and retrying.wire["reason"] == "PodsPending"
    assert retrying.actions == []


def test_kueue_admits_the_rayjob_itself() -> None:
    waiting = decided(started("Queued"), 2, rayjob(suspend=True), queueName="gpus")
    assert waiting.actions == [] and "Kueue" in waiting.wire["message"]
    # Without Kueue, a suspended RayJob of an unsuspended batch is resumed.
    resumed = decided(started("Queued"), 2, rayjob("Suspended", suspend=True))
    assert resumed.actions == [SetRunJobSuspended(False)]


def test_maxparallelism_added_later_adds_no_shard_to_a_rayjob() -> None:
    late = decided(started("Running"), 50, rayjob("Running", "RUNNING"), maxParallelism=4)
    assert late.phase == Phase.RUNNING
    assert not [a for a in late.actions if isinstance(a, CreateExtraRunJob)]
    assert late.wire.get("shardCount") in (None, 1)


def test_removing_ray_workers_before_the_rayjob_exists_fails_the_batch() -> None:
    body = batchjob(started("Queued", reason="Planning"), backend="ray", parallelism=1)
    lost = decide(observe(body, 1, None))
    assert lost.phase == Phase.FAILED and lost.actions == []
    assert "spec.ray.workers" in lost.wire["message"] and "new BatchJob" in lost.wire["message"]


# --- finishing -----------------------------------------------------------------------------


def test_a_succeeded_ray_job_finalizes_then_succeeds() -> None:
    done = rayjob("Complete", "SUCCEEDED")
    finalizing = decided(started("Running"), 5, done)
    assert finalizing.phase == Phase.FINALIZING and finalizing.wire["reason"] == "ShardsComplete"
    assert finalizing.actions == [CreateFinalizeJob("none")]
    assert "RayJob demo-ray finished" in finalizing.wire["message"]
    succeeded = decided(
        finalizing.wire, 6, done, finalize=finalize_job(complete=True), manifest=MANIFEST
    )
    assert succeeded.phase == Phase.SUCCEEDED
    assert succeeded.wire["requestCounts"] == {"total": 20, "completed": 18, "failed": 2}


def test_a_failed_rayjob_fails_the_batch_with_kuberays_message() -> None:
    message = LOG.format(code=1) + "RuntimeError: CUDA out of memory\n"
    failed = decided(
        started("Running"), 5, rayjob("Failed", "FAILED", reason="AppFailed", message=message)
    )
    assert failed.phase == Phase.FAILED and failed.wire["reason"] == "BackoffLimitExceeded"
    text = failed.wire["message"]
    assert "RayJob demo-ray failed" in text and "AppFailed" in text
    assert "CUDA out of memory" in text and "kubectl logs job/demo-ray" in text
    assert condition(failed.wire, "Failed")["message"] == text
    warnings = [e for e in failed.events if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["BackoffLimitExceeded"]
    assert text in warnings[0].message
    assert failed.actions == []  # KubeRay gave up: nothing runs any more


def test_a_failed_progress_document_does_not_make_a_rayjob_failure_permanent() -> None:
    # The runner writes state "failed" on any exception: only the entrypoint's exit code 42
    # (in KubeRay's message) says permanent.
    message = LOG.format(code=1) + "ConnectionError: lost the object store\n"
    failed = decided(
        started("Running"),
        5,
        rayjob("Failed", "FAILED", reason="AppFailed", message=message),
        progress=[progress(0, state="failed")],
    )
    assert failed.phase == Phase.FAILED and failed.wire["reason"] == "BackoffLimitExceeded"


def test_a_permanent_error_stops_kuberays_retries() -> None:
    retrying = rayjob("Retrying", "FAILED", message=LOG.format(code=42) + "no such model\n")
    failed = decided(started("Running"), 5, retrying)
    assert failed.phase == Phase.FAILED and failed.wire["reason"] == "PermanentError"
    assert "no such model" in failed.wire["message"]
    assert failed.actions == [SetRunJobSuspended(True)]


# --- GPU-seconds ---------------------------------------------------------------------------


HEAD_GPU = {"headResources": {"gpu": 1, "cpu": "4", "memory": "16Gi"}}


@pytest.mark.parametrize(
    ("spec_ray", "pods", "gpu_seconds"),
    [
        # spec.resources.gpu is 1; the workers hold workerResources.gpu = 2 each, the head
        # none (its default): 2 workers x 2 GPUs x 120 s.
        ({"workers": 2, "workerResources": {"gpu": 2}}, None, 2 * 2 * 120),
        # A head with a GPU counts it.
        ({"workers": 2, "workerResources": {"gpu": 2}, **HEAD_GPU}, None, (2 * 2 + 1) * 120),
        # Without workerResources the workers hold spec.resources.gpu.
        ({"workers": 2}, None, 2 * 1 * 120),
        # What each pod's own limits say comes first (here 4 GPUs, the spec says 2).
        (
            {"workers": 2, "workerResources": {"gpu": 2}},
            [
                ray_pod("ray-head", limits={"cpu": "2"}),
                ray_pod(limits={"nvidia.com/gpu": "4"}),
                ray_pod(limits={"nvidia.com/gpu": "4"}),
            ],
            2 * 4 * 120,
        ),
    ],
)
def test_gpu_seconds_count_each_ray_pods_own_gpus(
    spec_ray: dict[str, Any], pods: list[dict[str, Any]] | None, gpu_seconds: int
) -> None:
    pods = pods or [ray_pod("ray-head"), ray_pod(), ray_pod()]
    body = ray_batch(started("Running"), ray=spec_ray)
    running = decide(observe(body, 3, rayjob("Running", "RUNNING"), pods))
    assert running.wire["gpuSeconds"] == gpu_seconds


# --- cancel, suspend, deadline -------------------------------------------------------------


def test_cancel_suspends_the_rayjob_waits_for_kuberay_then_finalizes() -> None:
    pods = [ray_pod("ray-head"), ray_pod()]
    cancelling = decided(started("Running"), 5, rayjob("Running", "RUNNING"), pods, cancel=True)
    assert cancelling.phase == Phase.CANCELLING
    assert cancelling.actions == [SetRunJobSuspended(True)]
    # KubeRay is deleting the cluster: wait, without asking again.
    removing = decided(cancelling.wire, 5.2, rayjob("Suspending", suspend=True), pods, cancel=True)
    assert removing.actions == [] and "Ray pod(s) to stop" in removing.wire["message"]
    gone = decided(cancelling.wire, 5.5, rayjob("Suspended", suspend=True), cancel=True)
    assert gone.actions == [CreateFinalizeJob("cancelled")]
    cancelled = decided(
        gone.wire,
        6,
        rayjob("Suspended", suspend=True),
        cancel=True,
        finalize=finalize_job(complete=True),
        manifest=MANIFEST,
    )
    assert cancelled.phase == Phase.CANCELLED


def test_suspend_and_resume_act_on_the_rayjob() -> None:
    suspended = decided(started("Running"), 5, rayjob("Running", "RUNNING"), suspend=True)
    assert suspended.phase == Phase.SUSPENDED
    assert suspended.actions == [SetRunJobSuspended(True)]
    # Suspended before the RayJob existed: it is created suspended (the builder's suspend).
    early = decided(started("Queued"), 1, None, suspend=True)
    assert early.phase == Phase.SUSPENDED and early.actions == [CreateRunJob()]
    resumed = decided(suspended.wire, 10, rayjob("Suspended", suspend=True))
    assert resumed.phase == Phase.QUEUED and resumed.wire["reason"] == "Resumed"
    assert resumed.actions == [SetRunJobSuspended(False)]


def test_at_the_deadline_the_runner_stops_itself_then_the_rayjob_is_suspended() -> None:
    pods = [ray_pod("ray-head"), ray_pod()]
    running = rayjob("Running", "RUNNING")
    # Within the grace the runner records its lines as expired by itself (exit 43).
    grace = decided(started("Running"), 60.2, running, pods)
    assert grace.phase == Phase.FINALIZING and grace.wire["reason"] == "DeadlineExceeded"
    assert grace.actions == []
    late = decided(grace.wire, 62, running, pods)
    assert late.actions == [SetRunJobSuspended(True)]
    # KubeRay's own activeDeadlineSeconds, or the runner's exit 43, end it: finalize as expired.
    for ended in (
        rayjob("Failed", reason="DeadlineExceeded"),
        rayjob("Failed", "FAILED", reason="AppFailed", message=LOG.format(code=43)),
    ):
        expired = decided(started("Running"), 59, ended)
        assert expired.phase == Phase.FINALIZING, ended
        assert expired.actions == [CreateFinalizeJob("expired")]
