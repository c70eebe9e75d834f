"""Stopping and finalizing: once the batch stops (done, expired or cancelled), wait until no
shard runs, then finalize, then the outcome. No shard may still write when finalize starts, or
a line could be lost or counted twice."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from llmbatch.api.conditions import Reason
from llmbatch.api.documents import FinalizeReason, Manifest
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import CreateFinalizeJob, SetRunJobSuspended
from llmbatch.controller.backends import runs_rayjob
from llmbatch.controller.policy import cancel_suspend, deadline, failure, planning, rayjob
from llmbatch.controller.policy.verdict import Stop, Verdict

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation

_WAITING = " (waiting"


def stop_in_progress(obs: Observation) -> Stop | None:
    """Finalizing or Cancelling already: keep the reason that chose the finalize mode; only
    the message moves on."""
    status = obs.status
    if status.phase == Phase.CANCELLING:
        mode: FinalizeReason = "cancelled"
    elif status.phase == Phase.FINALIZING:
        mode = "expired" if status.reason == Reason.DEADLINE_EXCEEDED else "none"
    else:
        return None
    return Stop(mode, Verdict(status.phase, status.reason or "", status.message or ""))


def shards_complete(obs: Observation) -> Stop | None:
    """Every shard finished: even past the deadline nothing is left to expire."""
    if not obs.run.complete:
        return None
    message = f"all {obs.checked_spec.parallelism} shards finished: merging their parts"
    if runs_rayjob(obs):
        message = rayjob.finished_message(obs)
    return Stop("none", Verdict(Phase.FINALIZING, Reason.SHARDS_COMPLETE, message))


def proceed(obs: Observation, stop: Stop) -> Verdict:
    """The next step of a stop: wait for the shards, create the finalize Job, or conclude."""
    job, verdict = obs.run, stop.verdict
    if job.exists and not job.finished and (job.has_live_pods or not job.suspended):
        suspend = not job.suspended and not deadline.shards_stop_themselves(obs, stop.mode)
        live = max(job.live_pods, job.active)
        message = verdict.message
        if live:
            pods = "Ray pod(s)" if runs_rayjob(obs) else "shard pod(s)"
            message = f"{message.split(_WAITING)[0]}{_WAITING} for {live} {pods} to stop)"
        actions = (SetRunJobSuspended(True),) if suspend else ()
        return replace(verdict, message=message, actions=verdict.actions + actions)
    extra = sum(max(view.live_pods, view.active) for view in obs.extra_runs if view.exists)
    if extra and not obs.finalize.exists:
        # Every run Job is finished before finalize reads the parts (elastic.py stops them).
        message = f"{verdict.message.split(_WAITING)[0]}{_WAITING} for {extra} extra shard pod(s))"
        return replace(verdict, message=message)
    if not obs.finalize.exists:
        stop_plan = planning.stop_plan_step(obs)
        if stop_plan:
            message = f"{verdict.message.split(_WAITING)[0]}{_WAITING} for the plan pod to stop)"
            return replace(verdict, message=message, actions=verdict.actions + stop_plan)
        return replace(verdict, actions=(*verdict.actions, CreateFinalizeJob(stop.mode)))
    if obs.finalize.failed:
        return failure.finalize_failed(obs)
    if obs.finalize.complete:
        return outcome(stop, obs.manifest)
    return verdict


def summary(manifest: Manifest | None) -> str:
    """The outcome in counts, from the manifest finalize wrote."""
    counts = manifest.request_counts if manifest is not None else None
    if counts is None or not counts.model_fields_set:
        return "finalized"
    return f"{counts.completed} of {counts.total or 0} requests completed, {counts.failed} failed"


def outcome(stop: Stop, manifest: Manifest | None) -> Verdict:
    """How the batch ends once finalize is done. A cancel stays Cancelled even when nothing
    was left to cancel (the user asked for it); a late batch is Expired only when finalize
    recorded a request as batch_expired (``deadline.finalized_late``)."""
    text = summary(manifest)
    if stop.mode == "expired":
        return deadline.finalized_late(manifest, text)
    if stop.mode == "cancelled":
        return cancel_suspend.cancelled(text)
    return Verdict(Phase.SUCCEEDED, Reason.FINALIZED, text)
