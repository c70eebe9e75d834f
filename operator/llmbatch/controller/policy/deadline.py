"""Deadline and expiry: when the batch's completion window ends, and what happens then.

The deadline is creationTimestamp + spec.completionWindow. Past it (or when a shard says it
stopped at it), the shards stop and finalize records every unfinished line as batch_expired:
the batch ends Expired, or Succeeded when finalize found no unfinished line.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.api.conditions import Reason
from llmbatch.api.documents import FinalizeReason, Manifest
from llmbatch.api.durations import parse_duration
from llmbatch.api.phases import Phase
from llmbatch.api.timefmt import format_time, parse_time
from llmbatch.controller.policy.verdict import Stop, Verdict

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


def deadline_of(meta: Mapping[str, Any], spec: BatchJobSpec) -> datetime:
    """creationTimestamp + spec.completionWindow."""
    created = parse_time(meta.get("creationTimestamp"))
    if created is None:
        raise ValueError("the BatchJob has no creationTimestamp")
    return created + parse_duration(spec.completion_window)


def expiry(obs: Observation) -> Stop | None:
    """The deadline passed, by the operator's clock or by a shard's word (exit 43, the Job's
    activeDeadlineSeconds, an "expired" progress document): stop and finalize as expired."""
    states = obs.aggregate.states.values() if obs.aggregate else ()
    if not (obs.now >= obs.due or obs.run.expired_signal or "expired" in states):
        return None
    return Stop(
        "expired",
        Verdict(
            Phase.FINALIZING,
            Reason.DEADLINE_EXCEEDED,
            f"the deadline {format_time(obs.due)} passed: stopping shards, "
            "unfinished requests become batch_expired errors",
        ),
    )


def shards_stop_themselves(obs: Observation, mode: FinalizeReason) -> bool:
    """At the deadline the shards stop by themselves and record their lines as expired;
    suspending would SIGTERM them into recording "cancelled". Only shards that do not stop
    within the grace (stuck, or still loading the model) are suspended."""
    return (
        mode == "expired"
        and obs.run.has_live_pods
        and (obs.now - obs.due).total_seconds() < obs.stop_grace_seconds
    )


def finalized_late(manifest: Manifest | None, summary: str) -> Verdict:
    """Finalize ran after the deadline. Expired when it recorded requests as batch_expired.
    When it found every request answered (the last answers came in before the shards
    stopped: the deadline passed before the operator saw them finish), nothing expired:
    Succeeded. A manifest that does not count the unanswered lines (an older runner's) keeps
    the old outcome, Expired."""
    if manifest is not None and manifest.unanswered == 0:
        return Verdict(
            Phase.SUCCEEDED,
            Reason.FINALIZED,
            f"every request has its result (the deadline passed before finalize); {summary}",
        )
    return Verdict(Phase.EXPIRED, Reason.DEADLINE_EXCEEDED, f"the deadline passed; {summary}")


def seconds_to_deadline(obs: Observation) -> float | None:
    """For the daemon's timer: None when there is no deadline (the spec does not parse)."""
    if obs.deadline is None:
        return None
    return (obs.deadline - obs.now).total_seconds()
