"""Extra shards for the deadline (spec.maxParallelism): what the scaling decision means for the
batch's Jobs, its status and its Scaling condition, whatever phase the pass chose.

The run Job keeps spec.parallelism shards (never edited once admitted). Each extra shard is a
Job of its own, ``<name>-run-<n>`` (n = 1, 2, ...), with the run Job's queue label, so Kueue
admits it on its own; its shard claims chunks of the same plan. While Running the scaling
policy sets the count; in any other phase the extra shards go (deleted: the pod gets SIGTERM,
commits what it finished and releases its chunk) except those still running that stop by
themselves: once the run Job completed (every chunk is done), and in the grace after the
deadline. Finalize waits for them. Finished extra Jobs are left for ``kubectl logs`` (the
TTL deletes them with the others).

An extra shard whose Job failed, or was deleted by someone, is lost (``extra_shards.py``): while
Running, the pass that sees it records the lower count (reason ShardLost, a Warning event) and
changes nothing else; the scaling policy decides again from the next pass, after its interval.

Every pass also brings status.gpuSeconds (and costUsd) up to date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from llmbatch.api.batchjob import MAX_SHARD_HISTORY, BatchJobStatus, Condition, ShardChange
from llmbatch.api.conditions import ConditionType, Reason
from llmbatch.api.durations import parse_duration
from llmbatch.api.phases import Phase
from llmbatch.api.timefmt import format_time
from llmbatch.controller.actions import Action, CreateExtraRunJob, DeleteExtraRunJob, EventSpec
from llmbatch.controller.backends import container_resources
from llmbatch.controller.gpu_time import cost_usd, gpu_seconds_since
from llmbatch.controller.jobview import JobView
from llmbatch.controller.names import extra_run_job_name
from llmbatch.controller.policy.extra_shards import (
    ExtraJobs,
    Placement,
    failure_text,
    lost_count,
    place,
    sort_extras,
)
from llmbatch.controller.policy.scaling import (
    ScalingDecision,
    ScalingInputs,
    decide_scaling,
)
from llmbatch.controller.policy.verdict import Verdict
from llmbatch.controller.status_conditions import ConditionUpdate, find_condition

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation

# Reasons that mean "the count changes, or should and cannot": the condition is True.
_ACTIVE = frozenset(
    {
        Reason.SCALED_UP,
        Reason.SCALED_DOWN,
        Reason.WAITING_FOR_CAPACITY,
        Reason.AT_MAX_PARALLELISM,
        Reason.SCALE_COOLDOWN,
        Reason.MAX_PARALLELISM_LOWERED,
        Reason.SHARD_LOST,
    }
)
# Decisions that get an Event (a change, or a change wanted and blocked: a Warning).
_EVENTS = frozenset(
    {
        Reason.SCALED_UP,
        Reason.SCALED_DOWN,
        Reason.MAX_PARALLELISM_LOWERED,
        Reason.SHARDS_STOPPED,
        Reason.WAITING_FOR_CAPACITY,
        Reason.AT_MAX_PARALLELISM,
        Reason.SHARD_LOST,
    }
)
_WARNINGS = frozenset({Reason.WAITING_FOR_CAPACITY, Reason.AT_MAX_PARALLELISM, Reason.SHARD_LOST})


def steer(obs: Observation, status: BatchJobStatus, verdict: Verdict) -> Verdict:
    """The verdict with the extra shards' actions added; status gets the shard count, its
    history, GPU-seconds and the Scaling condition."""
    account_gpu(status, obs)
    spec = obs.checked_spec
    floor = spec.parallelism
    current = status.shard_count if status.shard_count is not None else floor
    extras = sort_extras(obs.extra_runs, obs.extra_deleting)
    if verdict.phase == Phase.RUNNING:
        decision, placement = _running(obs, status, current, extras)
        numbers = placement.numbers
        actions = _placement_actions(placement)
    else:
        numbers = tuple(sorted(_finishing_by_themselves(obs, verdict)))
        decision = _stopped(current, floor + len(numbers), verdict.phase)
        actions = _stop_actions(obs.extra_runs, set(numbers))
    target = floor + len(numbers)
    if target != current and status.shard_count is not None:
        _record_change(status, obs.now, current, target, decision.reason)
    status.shard_count = target
    if spec.elastic or obs.extra_runs or find_condition(status.conditions, _SCALING):
        update = _condition(status, decision, current)
        return replace(
            verdict, actions=verdict.actions + actions, conditions=(*verdict.conditions, update)
        )
    return replace(verdict, actions=verdict.actions + actions)


_SCALING = ConditionType.SCALING


def _running(
    obs: Observation, status: BatchJobStatus, current: int, extras: ExtraJobs
) -> tuple[ScalingDecision, Placement]:
    """While Running: record lost shards first (nothing else moves in that pass), else let the
    scaling policy decide on the shards held and place its target."""
    floor = obs.checked_spec.parallelism
    held = floor + len(extras.held)
    if status.shard_count is not None and lost_count(current - floor, extras):
        return _lost(obs, current, held, extras), Placement(keep=extras.held)
    # More Jobs than counted: a removal whose delete call did not go through; the count stands
    # and the placement deletes them again.
    decision = _running_decision(obs, status, min(held, current), extras)
    placement = place(extras, decision.target - floor, obs.checked_spec.shard_ceiling - floor)
    if placement.short:
        decision = replace(
            decision,
            message=f"{decision.message}; {placement.short} more once the Job of a lost shard "
            "is deleted (a new shard takes its number)",
        )
    return decision, placement


def _lost(obs: Observation, current: int, held: int, extras: ExtraJobs) -> ScalingDecision:
    """The lost shards, named (a failed Job and why; a Job gone), and what happens next."""
    floor = obs.checked_spec.parallelism
    previous = {shard.index: shard.state for shard in obs.status.shards}
    failed = [
        f"Job {extra_run_job_name(obs.name, n)} failed ({failure_text(obs.extra_runs[n - 1])})"
        for n in extras.failed
        if previous.get(floor + n - 1) != "Failed"
    ]
    gone = (current - held) - len(failed)
    what = failed[: current - held]
    if gone > 0:
        what.append(f"{gone} extra shard Job(s) gone (deleted, or never created)")
    interval = obs.scaling.interval.total_seconds()
    message = (
        f"extra shard(s) lost: {'; '.join(what)}. No line is lost: the chunk a lost shard held "
        f"goes to another shard when its lease expires. Shards {current} -> {held} (min "
        f"{floor}, max {obs.checked_spec.shard_ceiling}) at {format_time(obs.now)}; the "
        f"scaling policy decides again in {interval:.0f}s"
    )
    return ScalingDecision(held, Reason.SHARD_LOST, message)


def _running_decision(
    obs: Observation, status: BatchJobStatus, current: int, extras: ExtraJobs
) -> ScalingDecision:
    spec = obs.checked_spec
    if not spec.elastic:
        reason = (
            Reason.MAX_PARALLELISM_LOWERED if current != spec.parallelism else Reason.SCALE_STEADY
        )
        why = "scaling is off (spec.scalingPolicy None or no spec.maxParallelism above parallelism)"
        return ScalingDecision(
            spec.parallelism, reason, f"{why}; shards {current} -> {spec.parallelism}"
        )
    remaining = _remaining(obs)
    window = parse_duration(spec.completion_window)
    settings = obs.scaling
    held = [obs.extra_runs[n - 1] for n in extras.held]
    inputs = ScalingInputs(
        now=obs.now,
        deadline=obs.due,
        remaining=remaining if remaining is not None else 0,
        per_shard_rate=obs.shard_rate if remaining is not None else None,
        shards=current,
        floor=spec.parallelism,
        ceiling=spec.shard_ceiling,
        pending=pending_shards(obs.run, held),
        pending_reason=next((v.unschedulable for v in (obs.run, *held) if v.unschedulable), ""),
        last_change=status.shard_history[-1].time if status.shard_history else None,
        margin=settings.margin(window),
        interval=settings.interval,
        hysteresis=settings.hysteresis,
    )
    return decide_scaling(inputs)


def _remaining(obs: Observation) -> int | None:
    """Requests the shards have still to answer: the plan's runnable lines minus theirs."""
    agg = obs.aggregate
    total = obs.plan.runnable if obs.plan is not None else (agg.total if agg else None)
    if total is None:
        return None
    return max(0, total - (agg.done if agg is not None else 0))


def pending_shards(run: JobView, extras: Sequence[JobView]) -> int:
    """Shards that wait for capacity: the run Job's pods not running yet, and of the extra
    Jobs that hold a shard those Kueue has not admitted (suspended) or whose pod does not run
    yet."""
    pending = max(0, run.live_pods - run.running_pods)
    for view in extras:
        if view.finished:
            continue
        if view.suspended or not view.live_pods:
            pending += 1
        else:
            pending += view.live_pods - view.running_pods
    return pending


def _finishing_by_themselves(obs: Observation, verdict: Verdict) -> set[int]:
    """Outside Running only running extra shards that stop by themselves stay: once every
    chunk is done (the run Job completed), and within the grace after the deadline (they stop
    at it, finishing their requests in flight, as the run Job's shards do)."""
    expiring = (
        verdict.reason == Reason.DEADLINE_EXCEEDED
        and not verdict.phase.is_terminal()
        and 0 <= (obs.now - obs.due).total_seconds() < obs.stop_grace_seconds
    )
    if not (obs.run.complete or expiring):
        return set()
    return {
        n for n, view in enumerate(obs.extra_runs, 1) if view.running_pods and not view.finished
    }


def _stopped(current: int, target: int, phase: Phase) -> ScalingDecision:
    return ScalingDecision(
        target,
        Reason.SHARDS_STOPPED if target != current else Reason.SCALE_STEADY,
        f"the batch is {phase.value}: no extra shards are added; shards {current} -> {target}",
    )


def _placement_actions(placement: Placement) -> tuple[Action, ...]:
    """Create the new shards' Jobs, delete the removed ones (level-based: re-issued until the
    Jobs say so; 409 and 404 count as done)."""
    return (
        *(CreateExtraRunJob(n) for n in placement.create),
        *(DeleteExtraRunJob(n) for n in placement.delete),
    )


def _stop_actions(extras: Sequence[JobView], wanted: set[int]) -> tuple[Action, ...]:
    """Outside Running: delete the extra Jobs still at work but those left to stop by
    themselves; finished ones stay (their pods' logs), for the TTL."""
    return tuple(
        DeleteExtraRunJob(number)
        for number, view in enumerate(extras, 1)
        if view.exists and not view.finished and number not in wanted
    )


def _record_change(
    status: BatchJobStatus, now: datetime, before: int, after: int, reason: str
) -> None:
    change = ShardChange(time=now.replace(microsecond=0), from_=before, to=after, reason=reason)
    status.shard_history = [*status.shard_history, change][-MAX_SHARD_HISTORY:]


def _condition(status: BatchJobStatus, decision: ScalingDecision, current: int) -> ConditionUpdate:
    """The Scaling condition; its message (the numbers) moves only with a new decision, so
    the status is not rewritten for every new reading of the rate."""
    message = decision.message
    old = find_condition(status.conditions, _SCALING)
    if old is not None and old.reason == decision.reason and not decision.changes(current):
        message = old.message
    active = decision.reason in _ACTIVE
    return ConditionUpdate(_SCALING, "True" if active else "False", decision.reason, message)


def scaling_event(before: list[Condition], after: BatchJobStatus) -> EventSpec | None:
    """An Event for each scaling decision that changes the count or is blocked."""
    new = find_condition(after.conditions, _SCALING)
    if new is None or new.reason not in _EVENTS:
        return None
    old = find_condition(before, _SCALING)
    if old is not None and (old.reason, old.message) == (new.reason, new.message):
        return None
    return EventSpec(
        "Warning" if new.reason in _WARNINGS else "Normal", str(new.reason), new.message
    )


def account_gpu(status: BatchJobStatus, obs: Observation) -> None:
    """Add the pods' GPU time since status.gpuSecondsAt (whole seconds: the time is stored
    so), each pod counted with its own GPUs (a RayJob's head and workers by theirs), and the
    cost at spec.pricing."""
    spec = obs.checked_spec
    spans = [*obs.run.pod_spans, *(span for view in obs.extra_runs for span in view.pod_spans)]
    if status.gpu_seconds is None and not spans:
        return
    until = obs.now.replace(microsecond=0)
    gained = gpu_seconds_since(
        spans, status.gpu_seconds_at, until, lambda span: container_resources(spec, span.container)
    )
    status.gpu_seconds = round((status.gpu_seconds or 0.0) + gained, 1)
    status.gpu_seconds_at = until
    price = spec.pricing.gpu_hour_usd if spec.pricing is not None else None
    status.cost_usd = cost_usd(status.gpu_seconds, price)
