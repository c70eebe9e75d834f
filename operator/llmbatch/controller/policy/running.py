"""Running: validated, not stopping, not suspended. Create the Job, let it be admitted (or
resume it), and say what its pods are doing. A Job deleted by someone while the batch runs is
created again, the batch staying Running (JobRecreated, with a Warning event)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmbatch.api.conditions import Reason
from llmbatch.api.phases import Phase
from llmbatch.controller.backends import runs_rayjob
from llmbatch.controller.policy import rayjob
from llmbatch.controller.policy.starting import StartWords, starting
from llmbatch.controller.policy.verdict import Verdict

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


def run(obs: Observation) -> Verdict:
    if runs_rayjob(obs):
        return rayjob.run(obs)
    spec, job = obs.checked_spec, obs.run
    words = StartWords(
        deleted=f"the Job {obs.run_job} ({spec.parallelism} shard(s))",
        creating=f"creating the Job with {spec.parallelism} shard(s)",
        admitted="the Job",
        resuming="resuming the shards",
    )
    start = starting(obs, words)
    if start is not None:
        return start
    if job.running_pods > 0:
        return Verdict(
            Phase.RUNNING,
            Reason.PODS_RUNNING,
            f"{job.running_pods} of {spec.parallelism} shard pod(s) running, "
            f"{len(job.completed_indexes)} finished",
        )
    if obs.phase == Phase.RUNNING:
        # Between retries no pod runs; that does not send the batch back to the queue.
        return Verdict(Phase.RUNNING, Reason.PODS_PENDING, "waiting for shard pods to restart")
    why = f": {job.unschedulable}" if job.unschedulable else " (no free GPU yet, or not scheduled)"
    return Verdict(Phase.QUEUED, Reason.PODS_PENDING, f"waiting for shard pods to start{why}")
