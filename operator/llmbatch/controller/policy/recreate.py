"""A run Job (or the KubeRay form's RayJob) that someone deleted while the batch ran.

The lifecycle never goes back to Queued, and nothing is lost: the committed chunks are in the
store and the leases hand the others to whichever pod claims them next. So the batch stays
Running and the Job is created again (JobRecreated, with a Warning event, ``events.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmbatch.api.conditions import Reason
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import CreateRunJob
from llmbatch.controller.policy.verdict import Verdict

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


def recreated(obs: Observation, what: str) -> Verdict | None:
    """The verdict when the batch runs and its run child (``what``: the Job or RayJob and what
    it runs) is gone; None otherwise."""
    if obs.run.exists or obs.phase != Phase.RUNNING:
        return None
    return Verdict(
        Phase.RUNNING,
        Reason.JOB_RECREATED,
        f"{what} was deleted while the batch ran; creating it again: the chunks already "
        "committed are kept, and the new pods take the others over (a chunk a deleted pod "
        "still held, once its lease is released or expires)",
        (CreateRunJob(),),
    )
