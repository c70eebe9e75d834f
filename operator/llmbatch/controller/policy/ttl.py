"""TTL after finished: spec.ttlSecondsAfterFinished after completionTime, the Jobs (and so
their pods) are deleted; the BatchJob and the results in storage stay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmbatch.api.batchjob import BatchJobStatus
from llmbatch.controller.actions import Action, DeleteJobs

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


def seconds_to_expiry(obs: Observation, status: BatchJobStatus) -> float | None:
    """Seconds until the Jobs of the finished batch ``status`` are due for deletion (zero or
    less: due now); None without a TTL or a completion time."""
    ttl = obs.spec.ttl_seconds_after_finished if obs.spec is not None else None
    if ttl is None or status.completion_time is None:
        return None
    return (status.completion_time - obs.now).total_seconds() + ttl


def expired_jobs(obs: Observation) -> tuple[Action, ...]:
    """The actions for a finished batch: delete its Jobs once the TTL passed."""
    left = seconds_to_expiry(obs, obs.status)
    jobs = (obs.run, obs.finalize, obs.plan_step)
    if left is None or left > 0 or not any(job.exists for job in jobs):
        return ()
    return (DeleteJobs(),)
