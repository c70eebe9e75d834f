"""Getting the run child (the run Job, or the KubeRay form's RayJob) to run: the steps both
forms take in the same order, worded for each. Created again if someone deleted it while the
batch ran (``recreate.py``), created if it does not exist yet, left for Kueue to admit when a
queue holds it suspended, and unsuspended otherwise (a resumed batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmbatch.api.conditions import Reason
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import CreateRunJob, SetRunJobSuspended
from llmbatch.controller.policy.recreate import recreated
from llmbatch.controller.policy.verdict import Verdict

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


@dataclass(frozen=True)
class StartWords:
    """How the messages name the run child and what it runs."""

    deleted: str  # the child and what it runs, when it was deleted while running
    creating: str  # the message while creating it
    admitted: str  # what Kueue admits ("the Job", "the RayJob <name>")
    resuming: str  # the message while unsuspending it


def starting(obs: Observation, words: StartWords) -> Verdict | None:
    """The verdict while the run child is not yet running by itself; None once it is."""
    lost = recreated(obs, words.deleted)
    if lost is not None:
        return lost
    job, spec = obs.run, obs.checked_spec
    if not job.exists:
        resumed = obs.phase == Phase.SUSPENDED
        return Verdict(
            Phase.QUEUED,
            Reason.RESUMED if resumed else Reason.JOB_CREATED,
            words.creating,
            (CreateRunJob(),),
        )
    if not job.suspended:
        return None
    if spec.queue_name:
        # Kueue admits a Job by unsuspending it: not ours to do.
        return Verdict(
            Phase.QUEUED,
            Reason.PODS_PENDING,
            f"waiting for Kueue to admit {words.admitted} (queue {spec.queue_name})",
        )
    return Verdict(Phase.QUEUED, Reason.RESUMED, words.resuming, (SetRunJobSuspended(False),))
