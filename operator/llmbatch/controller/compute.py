"""The whole BatchJob state machine as one pure function.

``compute_status`` looks at what is (the BatchJob, its run Job and pods, the finalize Job, the
shards' progress objects, the manifest, the clock) and returns the status that describes it,
the merge patch from the old status, the actions that move the world forward and the events to
post once the status write has succeeded. It is level-based: calling it again with the same
observations gives the same answer and no new actions beyond re-issuing idempotent ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.api.conditions import ConditionType, Reason
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    Action,
    CreateFinalizeJob,
    CreateRunJob,
    DeleteJobs,
    EventSpec,
    SetRunJobSuspended,
)
from llmbatch.controller.build_jobs import FinalizeReason, deadline_of
from llmbatch.controller.jobview import JobView, view_job
from llmbatch.controller.names import finalize_job_name, run_job_name
from llmbatch.controller.progress import Aggregate, aggregate
from llmbatch.controller.status_conditions import condition_is_true, find_condition, set_condition
from llmbatch.controller.timefmt import format_time, parse_time
from llmbatch.controller.transitions import is_allowed
from llmbatch.controller.validation import ValidationResult, check_spec

# Fields that change with every progress object; written at most every few seconds.
VOLATILE_FIELDS = frozenset({"requestCounts", "usage", "progress", "throughput", "eta", "shards"})
ACTIVE_PHASES = frozenset({Phase.QUEUED, Phase.RUNNING, Phase.FINALIZING, Phase.CANCELLING})

_TERMINAL_CONDITION = {
    Phase.SUCCEEDED: ConditionType.COMPLETE,
    Phase.FAILED: ConditionType.FAILED,
    Phase.EXPIRED: ConditionType.EXPIRED,
    Phase.CANCELLED: ConditionType.CANCELLED,
}
# OpenAI batch timestamps (status.timestamps), set once on entering the phase.
_TIMESTAMP_OF = {
    Phase.QUEUED: "inProgressAt",
    Phase.RUNNING: "inProgressAt",
    Phase.SUSPENDED: "inProgressAt",
    Phase.FINALIZING: "finalizingAt",
    Phase.SUCCEEDED: "completedAt",
    Phase.FAILED: "failedAt",
    Phase.EXPIRED: "expiredAt",
    Phase.CANCELLING: "cancellingAt",
    Phase.CANCELLED: "cancelledAt",
}


@dataclass
class Decision:
    status: dict[str, Any]
    patch: dict[str, Any]
    actions: list[Action] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    transition: tuple[str | None, str] | None = None
    # A move the transitions table refused (logged, never applied).
    rejected: str | None = None
    sla_changed: bool = False

    @property
    def phase(self) -> Phase:
        return Phase(self.status["phase"])

    @property
    def volatile_only(self) -> bool:
        return bool(self.patch) and set(self.patch) <= VOLATILE_FIELDS


@dataclass
class _Target:
    phase: Phase
    reason: str
    message: str


def _phase_of(status: Mapping[str, Any]) -> Phase | None:
    try:
        value = status.get("phase")
        return Phase(str(value)) if value else None
    except ValueError:
        return None


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level JSON merge patch from ``old`` to ``new`` (None deletes a field)."""
    patch = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new})
    return patch


def _finalize_reason(current: Phase, status: Mapping[str, Any]) -> FinalizeReason | None:
    if current == Phase.CANCELLING:
        return "cancelled"
    if current == Phase.FINALIZING:
        return "expired" if status.get("reason") == Reason.DEADLINE_EXCEEDED else "none"
    return None


def _shard_list(indexes: Sequence[int] | set[int] | frozenset[int]) -> str:
    ordered = sorted(indexes)
    text = ", ".join(str(i) for i in ordered[:10])
    return text + (f" and {len(ordered) - 10} more" if len(ordered) > 10 else "")


def compute_status(
    batchjob: Mapping[str, Any],
    job: Mapping[str, Any] | None,
    finalize_job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    progress_objects: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    validation: ValidationResult | None = None,
    manifest: Mapping[str, Any] | None = None,
    stop_grace_seconds: float = 45.0,
    estimated_total: int | None = None,
) -> Decision:
    """``stop_grace_seconds``: after the deadline, how long shards get to stop by themselves
    (recording their lines as batch_expired) before the operator suspends the Job.
    ``estimated_total``: the input's line count estimated from its size, for the ETA while
    the shards have not counted their lines yet."""
    meta = batchjob.get("metadata") or {}
    old: dict[str, Any] = copy.deepcopy(dict(batchjob.get("status") or {}))
    new: dict[str, Any] = copy.deepcopy(old)
    current = _phase_of(old)
    stamp = format_time(now)
    generation = meta.get("generation")
    name = str(meta.get("name", ""))
    actions: list[Action] = []

    spec, problems = check_spec(batchjob.get("spec") or {})
    created = parse_time(meta.get("creationTimestamp")) or now
    new.setdefault("timestamps", {}).setdefault("createdAt", format_time(created))
    if generation is not None:
        new["observedGeneration"] = generation

    if spec is None:
        invalid = _Target(Phase.FAILED, Reason.VALIDATION_FAILED, "; ".join(problems))
        return _finish(batchjob, old, new, current, invalid, actions, now, stamp, None, None)
    deadline = deadline_of(batchjob)
    new["deadline"] = format_time(deadline)

    if current is not None and current.is_terminal():
        ttl = spec.ttl_seconds_after_finished
        done_at = parse_time(old.get("completionTime"))
        if (
            ttl is not None
            and done_at
            and (now - done_at).total_seconds() >= ttl
            and (job or finalize_job)
        ):
            actions.append(DeleteJobs())
        return Decision(status=new, patch=merge_patch(old, new), actions=actions)

    run = view_job(job, pods)
    fin = view_job(finalize_job)
    agg = (
        aggregate(progress_objects, spec.parallelism, now, estimated_total)
        if progress_objects
        else None
    )
    progress_states = set(agg.states.values()) if agg else set()
    phase = current or Phase.VALIDATING

    target: _Target | None = None
    if not old.get("jobName"):
        conditions = new.get("conditions") or []
        if spec.cancel:
            target = _Target(
                Phase.CANCELLED,
                Reason.CANCEL_REQUESTED,
                "cancelled before the batch started; no request ran",
            )
        elif problems:
            target = _Target(Phase.FAILED, Reason.VALIDATION_FAILED, "; ".join(problems))
        elif validation is None:
            target = _Target(
                Phase.VALIDATING,
                "Validating",
                "checking the input object, the storage secret and the model source",
            )
        elif validation.transient:
            target = _Target(Phase.VALIDATING, "Validating", f"will retry: {validation.message}")
            new["conditions"] = set_condition(
                conditions,
                ConditionType.VALIDATED,
                "Unknown",
                "CheckPending",
                validation.message,
                stamp,
                generation,
            )
        elif not validation.ok:
            target = _Target(Phase.FAILED, Reason.VALIDATION_FAILED, validation.message)
        else:
            # Names go into status before the Jobs exist: a restarted operator looks them up
            # instead of creating a second set.
            new["jobName"] = run_job_name(name)
            new["finalizeJobName"] = finalize_job_name(name)
            new["conditions"] = set_condition(
                conditions,
                ConditionType.VALIDATED,
                "True",
                Reason.VALIDATION_PASSED,
                validation.message,
                stamp,
                generation,
            )
        if target is not None and target.phase == Phase.FAILED:
            new["conditions"] = set_condition(
                new.get("conditions") or [],
                ConditionType.VALIDATED,
                "False",
                Reason.VALIDATION_FAILED,
                target.message,
                stamp,
                generation,
            )
    if target is None:
        target = _decide_running(
            spec,
            phase,
            new,
            run,
            fin,
            agg,
            progress_states,
            deadline,
            now,
            actions,
            manifest,
            stop_grace_seconds,
        )
    return _finish(
        batchjob,
        old,
        new,
        current,
        target,
        actions,
        now,
        stamp,
        agg,
        run,
        deadline=deadline,
        manifest=manifest,
        spec=spec,
    )


def _decide_running(
    spec: BatchJobSpec,
    phase: Phase,
    old: Mapping[str, Any],
    run: JobView,
    fin: JobView,
    agg: Aggregate | None,
    progress_states: set[str],
    deadline: datetime,
    now: datetime,
    actions: list[Action],
    manifest: Mapping[str, Any] | None,
    stop_grace_seconds: float,
) -> _Target:
    """The phases after validation: run, stop, finalize."""
    job_name = str(old.get("jobName"))
    stop = _finalize_reason(phase, old)
    target: _Target | None = None
    if stop is None:
        if spec.cancel:
            stop = "cancelled"
            target = _Target(
                Phase.CANCELLING,
                Reason.CANCEL_REQUESTED,
                "spec.cancel is true: stopping shards; finished requests are kept",
            )
        elif run.complete:
            # Every shard finished: even past the deadline nothing is left to expire.
            stop = "none"
            target = _Target(
                Phase.FINALIZING,
                Reason.SHARDS_COMPLETE,
                f"all {spec.parallelism} shards finished: merging their parts",
            )
        elif now >= deadline or run.expired_signal or "expired" in progress_states:
            stop = "expired"
            target = _Target(
                Phase.FINALIZING,
                Reason.DEADLINE_EXCEEDED,
                f"the deadline {format_time(deadline)} passed: stopping shards, "
                "unfinished requests become batch_expired errors",
            )
        elif run.failed or run.failed_indexes:
            if run.exists and not run.finished and not run.suspended:
                # Stop the shards still running: the batch cannot succeed any more.
                actions.append(SetRunJobSuspended(True))
            if run.permanent_error or "failed" in progress_states:
                return _Target(
                    Phase.FAILED,
                    Reason.PERMANENT_ERROR,
                    f"a shard exited with the permanent-error code 42 (model, input "
                    f"or arguments cannot work); see kubectl logs job/{job_name}",
                )
            failed = _shard_list(run.failed_indexes) or "?"
            reason = f" ({run.failed_reason})" if run.failed_reason else ""
            return _Target(
                Phase.FAILED,
                Reason.BACKOFF_LIMIT_EXCEEDED,
                f"shard(s) {failed} failed more than spec.maxRetries="
                f"{spec.max_retries} times{reason}; see kubectl logs job/{job_name}",
            )
        else:
            return _decide_active(spec, phase, run, actions)
    else:
        # Keep the reason that chose the finalize mode; only the message moves on.
        target = _Target(phase, str(old.get("reason") or ""), str(old.get("message") or ""))

    # Stopping: no shard may still write when finalize starts, or a line could be lost or
    # counted twice.
    if run.exists and not run.finished and (run.has_live_pods or not run.suspended):
        # At the deadline the shards stop by themselves and record their lines as expired;
        # suspending would SIGTERM them into recording "cancelled". Only shards that do not
        # stop within the grace (stuck, or still loading the model) are suspended.
        self_stopping = (
            stop == "expired"
            and run.has_live_pods
            and (now - deadline).total_seconds() < stop_grace_seconds
        )
        if not run.suspended and not self_stopping:
            actions.append(SetRunJobSuspended(True))
        live = max(run.live_pods, run.active)
        target.message = (
            (f"{target.message.split(' (waiting')[0]} (waiting for {live} shard pod(s) to stop)")
            if live
            else target.message
        )
        return target
    if not fin.exists:
        actions.append(CreateFinalizeJob(stop))
        return target
    if fin.failed:
        return _Target(
            Phase.FAILED,
            Reason.FINALIZE_FAILED,
            f"the finalize Job failed ({fin.failed_reason or 'pod failed'}); parts are "
            f"kept under {spec.output.rstrip('/')}/parts/; "
            f"see kubectl logs job/{old.get('finalizeJobName')}",
        )
    if fin.complete:
        counts = (manifest or {}).get("requestCounts") or {}
        summary = (
            (
                f"{counts.get('completed', 0)} of {counts.get('total', 0)} requests "
                f"completed, {counts.get('failed', 0)} failed"
            )
            if counts
            else "finalized"
        )
        if stop == "expired":
            return _Target(
                Phase.EXPIRED, Reason.DEADLINE_EXCEEDED, f"the deadline passed; {summary}"
            )
        if stop == "cancelled":
            return _Target(Phase.CANCELLED, Reason.CANCEL_REQUESTED, f"cancelled; {summary}")
        return _Target(Phase.SUCCEEDED, Reason.FINALIZED, summary)
    return target


def _decide_active(
    spec: BatchJobSpec, phase: Phase, run: JobView, actions: list[Action]
) -> _Target:
    """Validated, not stopping: create, suspend, resume, or report the pods."""
    if spec.suspend:
        if not run.exists:
            actions.append(CreateRunJob())
        elif not run.suspended:
            actions.append(SetRunJobSuspended(True))
        return _Target(
            Phase.SUSPENDED,
            Reason.SUSPEND_REQUESTED,
            "spec.suspend is true: shards are stopped; clear it to resume",
        )
    resumed = phase == Phase.SUSPENDED
    if not run.exists:
        actions.append(CreateRunJob())
        return _Target(
            Phase.QUEUED,
            Reason.RESUMED if resumed else Reason.JOB_CREATED,
            f"creating the Job with {spec.parallelism} shard(s)",
        )
    if run.suspended:
        if spec.queue_name:
            return _Target(
                Phase.QUEUED,
                Reason.PODS_PENDING,
                f"waiting for Kueue to admit the Job (queue {spec.queue_name})",
            )
        actions.append(SetRunJobSuspended(False))
        return _Target(Phase.QUEUED, Reason.RESUMED, "resuming the shards")
    if run.running_pods > 0:
        return _Target(
            Phase.RUNNING,
            Reason.PODS_RUNNING,
            f"{run.running_pods} of {spec.parallelism} shard pod(s) running, "
            f"{len(run.completed_indexes)} finished",
        )
    if phase == Phase.RUNNING:
        # Between retries no pod runs; that does not send the batch back to the queue.
        return _Target(Phase.RUNNING, Reason.PODS_PENDING, "waiting for shard pods to restart")
    why = f": {run.unschedulable}" if run.unschedulable else " (no free GPU yet, or not scheduled)"
    return _Target(Phase.QUEUED, Reason.PODS_PENDING, f"waiting for shard pods to start{why}")


def _finish(
    batchjob: Mapping[str, Any],
    old: dict[str, Any],
    new: dict[str, Any],
    current: Phase | None,
    target: _Target,
    actions: list[Action],
    now: datetime,
    stamp: str,
    agg: Aggregate | None,
    run: JobView | None,
    *,
    deadline: datetime | None = None,
    manifest: Mapping[str, Any] | None = None,
    spec: BatchJobSpec | None = None,
) -> Decision:
    generation = (batchjob.get("metadata") or {}).get("generation")
    events: list[EventSpec] = []
    rejected: str | None = None
    phase = current or Phase.VALIDATING
    if not is_allowed(phase, target.phase):
        rejected = f"{phase} -> {target.phase} is not an allowed transition"
        # Actions computed for the refused phase must not run either.
        actions.clear()
        target = _Target(phase, str(old.get("reason") or ""), str(old.get("message") or ""))
    new["phase"] = target.phase.value
    new["reason"] = target.reason
    new["message"] = target.message
    timestamps = new.setdefault("timestamps", {})
    ts_key = _TIMESTAMP_OF.get(target.phase)
    if ts_key:
        timestamps.setdefault(ts_key, stamp)
    if target.phase == Phase.RUNNING:
        new.setdefault("startTime", stamp)
    if target.phase.is_terminal():
        new.setdefault("completionTime", stamp)
        new.pop("eta", None)
    conditions = new.get("conditions") or []
    if new.get("jobName"):
        conditions = set_condition(
            conditions,
            ConditionType.RUNNING,
            "True" if target.phase == Phase.RUNNING else "False",
            target.reason,
            target.message,
            stamp,
            generation,
        )
    if target.phase == Phase.SUSPENDED:
        conditions = set_condition(
            conditions,
            ConditionType.SUSPENDED,
            "True",
            target.reason,
            target.message,
            stamp,
            generation,
        )
    elif find_condition(conditions, ConditionType.SUSPENDED) is not None:
        conditions = set_condition(
            conditions,
            ConditionType.SUSPENDED,
            "False",
            Reason.RESUMED,
            "spec.suspend is false",
            stamp,
            generation,
        )
    terminal_type = _TERMINAL_CONDITION.get(target.phase)
    if terminal_type is not None:
        conditions = set_condition(
            conditions, terminal_type, "True", target.reason, target.message, stamp, generation
        )
    was_at_risk = condition_is_true(old.get("conditions") or [], ConditionType.SLA_AT_RISK)
    conditions = _progress_fields(
        new, conditions, target.phase, agg, run, deadline, manifest, spec, now, stamp, generation
    )
    if conditions:
        new["conditions"] = conditions
    at_risk = condition_is_true(conditions, ConditionType.SLA_AT_RISK)
    transition: tuple[str | None, str] | None = None
    if current != target.phase:
        transition = (current.value if current else None, target.phase.value)
        warn = target.phase in (Phase.FAILED, Phase.EXPIRED)
        events.append(
            EventSpec(
                "Warning" if warn else "Normal",
                target.reason or target.phase,
                f"{target.phase.value}: {target.message}",
            )
        )
    if at_risk != was_at_risk:
        sla = find_condition(conditions, ConditionType.SLA_AT_RISK) or {}
        events.append(
            EventSpec(
                "Warning" if at_risk else "Normal",
                "SLAAtRisk" if at_risk else "SLAWithinDeadline",
                f"ETA {new.get('eta', 'unknown')}: {sla.get('message', '')}",
            )
        )
    return Decision(
        status=new,
        patch=merge_patch(old, new),
        actions=actions,
        events=events,
        transition=transition,
        rejected=rejected,
        sla_changed=at_risk != was_at_risk,
    )


def _progress_fields(
    new: dict[str, Any],
    conditions: list[dict[str, Any]] | list[Mapping[str, Any]],
    phase: Phase,
    agg: Aggregate | None,
    run: JobView | None,
    deadline: datetime | None,
    manifest: Mapping[str, Any] | None,
    spec: BatchJobSpec | None,
    now: datetime,
    stamp: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """requestCounts, usage, progress, throughput, eta, shards and SLAAtRisk."""
    result = [dict(c) for c in conditions]
    if manifest and phase.is_terminal():
        final = manifest.get("requestCounts") or {}
        usage = manifest.get("usage") or {}
        final_total = int(final.get("total", 0))
        done = int(final.get("completed", 0)) + int(final.get("failed", 0))
        new["requestCounts"] = {
            "total": final_total,
            "completed": int(final.get("completed", 0)),
            "failed": int(final.get("failed", 0)),
        }
        new["usage"] = {
            "promptTokens": int(usage.get("promptTokens", 0)),
            "completionTokens": int(usage.get("completionTokens", 0)),
        }
        new["progress"] = f"{done}/{final_total}"
        # A finished batch shows its average rate (tokens/s from the first running shard to
        # the end), not the zero of "nothing running now".
        started = parse_time(new.get("startTime"))
        if started is not None:
            tokens = new["usage"]["promptTokens"] + new["usage"]["completionTokens"]
            new["throughput"] = round(tokens / max(1.0, (now - started).total_seconds()), 1)
        sha = (manifest.get("sha256") or {}).get("input")
        if sha:
            new["inputSha256"] = sha
        if spec is not None:
            prefix = spec.output.rstrip("/")
            new["outputFile"] = f"{prefix}/output.jsonl"
            new["errorFile"] = f"{prefix}/errors.jsonl"
            new["manifest"] = f"{prefix}/manifest.json"
        return result
    if agg is None or phase.is_terminal():
        return result
    # Counters never go backwards: a shard resumed from its checkpoint may briefly report
    # less than it did before it was restarted.
    old_counts = new.get("requestCounts") or {}
    completed = max(agg.completed, int(old_counts.get("completed", 0)))
    failed = max(agg.failed, int(old_counts.get("failed", 0)))
    # The CRD defaults an unwritten total to 0: an old total counts only if it is plausible.
    old_total = int(old_counts.get("total") or 0)
    total = agg.total if agg.total is not None else (old_total or None)
    counts: dict[str, Any] = {"completed": completed, "failed": failed}
    if total is not None:
        counts["total"] = int(total)
    new["requestCounts"] = counts
    old_usage = new.get("usage") or {}
    new["usage"] = {
        "promptTokens": max(agg.prompt_tokens, int(old_usage.get("promptTokens", 0))),
        "completionTokens": max(agg.completion_tokens, int(old_usage.get("completionTokens", 0))),
    }
    new["progress"] = f"{completed + failed}/{total if total is not None else '?'}"
    new["throughput"] = agg.throughput if phase == Phase.RUNNING else 0.0
    if spec is not None and run is not None and run.exists:
        old_shards = {int(s.get("index", -1)): s for s in new.get("shards") or []}
        shards = []
        for index in range(spec.parallelism):
            if index in run.completed_indexes:
                state = "Succeeded"
            elif index in run.failed_indexes:
                state = "Failed"
            elif index in run.running_indexes:
                state = "Running"
            else:
                state = "Pending"
            counts_i = agg.per_shard.get(index, (0, 0))
            restarts = max(
                run.restarts.get(index, 0), int(old_shards.get(index, {}).get("restarts", 0))
            )
            shards.append(
                {
                    "index": index,
                    "state": state,
                    "completed": counts_i[0],
                    "failed": counts_i[1],
                    "restarts": restarts,
                }
            )
        new["shards"] = shards
    if phase == Phase.RUNNING and agg.eta is not None and deadline is not None:
        new["eta"] = format_time(agg.eta)
        late = agg.eta > deadline
        # No moving ETA in the message: the condition changes only when the verdict does.
        message = (
            f"status.eta is {'after' if late else 'before'} the deadline {format_time(deadline)}"
        )
        result = set_condition(
            result,
            ConditionType.SLA_AT_RISK,
            "True" if late else "False",
            Reason.ETA_PAST_DEADLINE if late else Reason.ETA_WITHIN_DEADLINE,
            message,
            stamp,
            generation,
        )
    elif phase != Phase.RUNNING:
        new.pop("eta", None)
    return result
