"""Failure and retries: the Job retries a shard up to spec.maxRetries times
(backoffLimitPerIndex); a shard out of retries, or one that exited with the permanent-error
code (read from its pod's terminated state, the one place that says it), fails the batch. So
does an extra shard with the permanent-error code, and a failed finalize Job."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from llmbatch.api.conditions import Reason
from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.layout import OutputLayout
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import Action, SetRunJobSuspended
from llmbatch.controller.backends import runs_rayjob
from llmbatch.controller.names import extra_run_job_name
from llmbatch.controller.policy import rayjob
from llmbatch.controller.policy.verdict import Verdict

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


def shard_list(indexes: Iterable[int]) -> str:
    ordered = sorted(indexes)
    text = ", ".join(str(i) for i in ordered[:10])
    return text + (f" and {len(ordered) - 10} more" if len(ordered) > 10 else "")


def shard_failure(obs: Observation) -> Verdict | None:
    if runs_rayjob(obs):
        return rayjob.failure(obs)
    job = obs.run
    if not (job.failed or job.failed_indexes):
        return extra_shard_failure(obs)
    actions: tuple[Action, ...] = ()
    if job.exists and not job.finished and not job.suspended:
        # Stop the shards still running: the batch cannot succeed any more.
        actions = (SetRunJobSuspended(True),)
    # Only the exit code says permanent: the runner's progress document says "failed" after
    # any exception, retryable ones too (and extra shards' documents are among them).
    if job.permanent_error:
        return Verdict(
            Phase.FAILED,
            Reason.PERMANENT_ERROR,
            f"a shard exited with the permanent-error code {int(ExitCode.PERMANENT)} (model, "
            f"input or arguments cannot work); see kubectl logs job/{obs.run_job}",
            actions,
        )
    failed = shard_list(job.failed_indexes) or "?"
    reason = f" ({job.failed_reason})" if job.failed_reason else ""
    return Verdict(
        Phase.FAILED,
        Reason.BACKOFF_LIMIT_EXCEEDED,
        f"shard(s) {failed} failed more than spec.maxRetries="
        f"{obs.checked_spec.max_retries} times{reason}; see kubectl logs job/{obs.run_job}",
        actions,
    )


def extra_shard_failure(obs: Observation) -> Verdict | None:
    """An extra shard (spec.maxParallelism) that exited with the permanent-error code fails the
    batch as a run Job shard does: it runs the same model, input and arguments. Any other
    failure of an extra shard costs time, not lines: it is a lost shard (``elastic.py``)."""
    for number, view in enumerate(obs.extra_runs, 1):
        if not (view.exists and (view.failed or view.failed_indexes) and view.permanent_error):
            continue
        run = obs.run
        actions: tuple[Action, ...] = ()
        if run.exists and not run.finished and not run.suspended:
            actions = (SetRunJobSuspended(True),)
        name = extra_run_job_name(obs.name, number)
        words = f": {view.termination_message[-300:]}" if view.termination_message else ""
        return Verdict(
            Phase.FAILED,
            Reason.PERMANENT_ERROR,
            f"extra shard {obs.checked_spec.parallelism + number - 1} exited with the "
            f"permanent-error code {int(ExitCode.PERMANENT)} (model, input or arguments cannot "
            f"work){words}; see kubectl logs job/{name}",
            actions,
        )
    return None


def finalize_failed(obs: Observation) -> Verdict:
    parts = OutputLayout(obs.checked_spec.output).parts_dir
    return Verdict(
        Phase.FAILED,
        Reason.FINALIZE_FAILED,
        f"the finalize Job failed ({obs.finalize.failed_reason or 'pod failed'}); parts are "
        f"kept under {parts}; see kubectl logs job/{obs.finalize_job}",
    )
