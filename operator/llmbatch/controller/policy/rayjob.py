"""The KubeRay form (spec.ray.workers): what the run policies say when a RayJob, not the run Job,
runs the batch. The RayJob is read into the same ``JobView`` (``kuberay.py``), so the decisions
are the run Job's (create after the plan, suspend to stop, finalize once it finished or
stopped); only the words differ, and two cases the run Job does not have.

Its state maps onto ours: no RayJob yet -> Queued (JobCreated); KubeRay starting the cluster
or retrying -> Queued, or Running once the batch ran (PodsPending); the Ray job RUNNING ->
Running (PodsRunning); Complete and SUCCEEDED -> Finalizing (ShardsComplete); Failed after
KubeRay's retries -> Failed (BackoffLimitExceeded, or PermanentError when the runner exited 42),
with KubeRay's reason and message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from llmbatch.api.conditions import Reason
from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import Action, SetRunJobSuspended
from llmbatch.controller.backends import runs_rayjob, uses_rayjob
from llmbatch.controller.policy.starting import StartWords, starting
from llmbatch.controller.policy.verdict import Verdict

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


def _logs(obs: Observation) -> str:
    # KubeRay's submitter Job has the RayJob's name and follows the driver's log.
    return f"see kubectl logs job/{obs.run_job} and kubectl describe rayjob/{obs.run_job}"


def without_scaling(obs: Observation) -> Observation:
    """The KubeRay form adds no shards: the Ray cluster is its parallelism. Validation refuses
    spec.maxParallelism with spec.ray.workers; one added later is ignored here, so no extra
    run Job ever joins a RayJob."""
    spec = obs.spec
    if spec is None or spec.max_parallelism is None or not runs_rayjob(obs):
        return obs
    return replace(obs, spec=spec.model_copy(update={"max_parallelism": None}))


def form_lost(obs: Observation) -> Verdict | None:
    """The batch started in the KubeRay form, its RayJob is still to be created, and
    spec.ray.workers is gone: the RayJob cannot be built, and running the one-pod form instead
    would ignore what the batch was admitted as."""
    if not runs_rayjob(obs) or obs.run.exists or uses_rayjob(obs.checked_spec):
        return None
    return Verdict(
        Phase.FAILED,
        Reason.VALIDATION_FAILED,
        f"spec.ray.workers (or spec.backend ray) was removed after the batch started as the "
        f"RayJob {obs.run_job}; the form is fixed when a batch starts: create a new BatchJob",
    )


def run(obs: Observation) -> Verdict:
    """Create the RayJob, let KubeRay (or Kueue) start it, and say what KubeRay says."""
    spec, job, name = obs.checked_spec, obs.run, obs.run_job
    workers = spec.ray.workers if spec.ray is not None else None
    what = f"a Ray head and {workers} GPU worker pod(s)"
    words = StartWords(
        deleted=f"the RayJob {name} ({what})",
        creating=f"creating the RayJob {name}: {what}",
        admitted=f"the RayJob {name}",
        resuming=f"resuming the RayJob {name}",
    )
    start = starting(obs, words)
    if start is not None:
        return start
    if 0 in job.running_indexes:
        return Verdict(
            Phase.RUNNING,
            Reason.PODS_RUNNING,
            f"the RayJob {name} runs the batch ({job.state}; {job.running_pods} Ray pod(s) "
            "running)",
        )
    why = f": {job.unschedulable}" if job.unschedulable else ""
    if obs.phase == Phase.RUNNING:
        # Retrying on a new cluster: the batch does not go back to the queue.
        return Verdict(
            Phase.RUNNING,
            Reason.PODS_PENDING,
            f"waiting for the RayJob {name} to run again ({job.state}){why}",
        )
    return Verdict(
        Phase.QUEUED,
        Reason.PODS_PENDING,
        f"waiting for KubeRay to start the Ray cluster and submit the job (RayJob {name}: "
        f"{job.state}){why}",
    )


def failure(obs: Observation) -> Verdict | None:
    """KubeRay gave up (after spec.maxRetries retries), or the runner exited with the
    permanent-error code, which no retry can mend: then the RayJob is suspended so KubeRay
    stops retrying."""
    job = obs.run
    if not (job.failed or job.failed_indexes):
        return None
    actions: tuple[Action, ...] = ()
    if job.exists and not job.finished and not job.suspended:
        actions = (SetRunJobSuspended(True),)
    said = f"; the log ends: {job.termination_message}" if job.termination_message else ""
    # The entrypoint's exit code in KubeRay's message, not the progress document's "failed"
    # (written after any exception, retryable ones too).
    if job.permanent_error:
        return Verdict(
            Phase.FAILED,
            Reason.PERMANENT_ERROR,
            f"the RayJob {obs.run_job}'s entrypoint exited with the permanent-error code "
            f"{int(ExitCode.PERMANENT)} (model, input or arguments cannot work){said}; "
            f"{_logs(obs)}",
            actions,
        )
    return Verdict(
        Phase.FAILED,
        Reason.BACKOFF_LIMIT_EXCEEDED,
        f"the RayJob {obs.run_job} failed after spec.maxRetries={obs.checked_spec.max_retries} "
        f"retries: {job.failed_message or job.failed_reason or job.state}{said}; {_logs(obs)}",
        actions,
    )


def finished_message(obs: Observation) -> str:
    return f"the RayJob {obs.run_job} finished: merging its parts"
