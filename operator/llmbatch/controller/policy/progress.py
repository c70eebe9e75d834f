"""Progress and ETA: what the status says about the work done (request counts, token usage,
``done/total``, throughput, per-shard summary) and whether the ETA is past the deadline
(the SLAAtRisk condition). The phase is not this policy's to choose.

Once the plan exists its totals are the status's from the first minute: requestCounts.total
is the plan's, the lines it refused count as failed, prompt tokens are its count until the
shards report more. Counters never go backwards and done never exceeds the total."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmbatch.api.batchjob import BatchJobStatus, PlanStatus, RequestCounts, ShardStatus, Usage
from llmbatch.api.conditions import ConditionType, Reason
from llmbatch.api.documents import Manifest
from llmbatch.api.layout import OutputLayout
from llmbatch.api.phases import Phase
from llmbatch.api.plan import PlanSummary
from llmbatch.api.timefmt import format_time
from llmbatch.controller.aggregate import NOTHING_YET, Aggregate
from llmbatch.controller.jobview import JobView
from llmbatch.controller.status_conditions import ConditionUpdate

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


def record(status: BatchJobStatus, obs: Observation, phase: Phase) -> ConditionUpdate | None:
    """Write the progress fields for a batch now in ``phase``; the SLAAtRisk condition to set,
    if any."""
    if obs.manifest is not None and phase.is_terminal():
        record_final(status, obs, obs.manifest)
        return None
    if phase.is_terminal():
        return None
    if obs.plan is not None:
        status.plan = plan_status(obs.plan)
    if obs.aggregate is None and obs.plan is None:
        return None
    agg = obs.aggregate or NOTHING_YET
    record_live(status, agg, phase, obs.plan)
    if obs.spec is not None and obs.run.exists:
        status.shards = shard_summary(obs, agg, status.shards)
    return eta_verdict(status, obs, phase)


def plan_status(plan: PlanSummary) -> PlanStatus:
    return PlanStatus(
        chunks=plan.chunk_count,
        invalid=plan.invalid,
        prompt_tokens=plan.prompt_tokens,
        token_counter=plan.token_counter,
    )


def record_final(status: BatchJobStatus, obs: Observation, manifest: Manifest) -> None:
    """The manifest's exact counts, once finalize wrote it."""
    counts, usage = manifest.request_counts, manifest.usage
    total = counts.total or 0
    status.request_counts = RequestCounts(
        total=total, completed=counts.completed, failed=counts.failed
    )
    status.usage = Usage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
    )
    status.progress = f"{counts.completed + counts.failed}/{total}"
    if status.start_time is not None:
        # A finished batch shows its average rate (tokens/s from the first running shard to
        # the end), not the zero of "nothing running now".
        tokens = usage.prompt_tokens + usage.completion_tokens
        elapsed = (obs.now - status.start_time).total_seconds()
        status.throughput = round(tokens / max(1.0, elapsed), 1)
    if manifest.sha256.input:
        status.input_sha256 = manifest.sha256.input
    if obs.spec is not None:
        layout = OutputLayout(obs.spec.output)
        status.output_file = layout.output_file
        status.error_file = layout.errors_file
        status.manifest = layout.manifest


def record_live(
    status: BatchJobStatus, agg: Aggregate, phase: Phase, plan: PlanSummary | None = None
) -> None:
    """The shards' live counters, with the plan's totals once there is a plan. Counters
    never go backwards (a shard resumed from its checkpoint may briefly report less than
    before it was restarted), and done never exceeds the total (a chunk recomputed after a
    kill is counted by both shards until finalize counts exactly)."""
    old = status.request_counts or RequestCounts()
    invalid = plan.invalid if plan is not None else 0
    completed = max(agg.completed, old.completed)
    failed = max(agg.failed + invalid, old.failed)
    total = _live_total(agg, old, plan)
    if total is not None:
        failed = min(failed, total)
        completed = min(completed, total - failed)
    status.request_counts = RequestCounts(total=total, completed=completed, failed=failed)
    old_usage = status.usage or Usage()
    planned_tokens = plan.prompt_tokens if plan is not None else 0
    status.usage = Usage(
        prompt_tokens=max(agg.prompt_tokens, planned_tokens, old_usage.prompt_tokens),
        completion_tokens=max(agg.completion_tokens, old_usage.completion_tokens),
    )
    status.progress = f"{completed + failed}/{total if total is not None else '?'}"
    status.throughput = agg.throughput if phase == Phase.RUNNING else 0.0


def _live_total(agg: Aggregate, old: RequestCounts, plan: PlanSummary | None) -> int | None:
    if plan is not None:
        return plan.total
    if agg.total is not None:
        return agg.total
    # The CRD defaults an unwritten total to 0: an old total counts only if it is plausible.
    return old.total or None


def shard_summary(
    obs: Observation, agg: Aggregate, previous: list[ShardStatus]
) -> list[ShardStatus]:
    """One entry per shard: its state by the Job, its counters, the retries it spent. The run
    Job's shards come first, then the extra shards (spec.maxParallelism) whose Jobs exist,
    each the only index of its own Job."""
    parallelism = obs.checked_spec.parallelism
    old_restarts = {shard.index: shard.restarts for shard in previous}
    owners = [(index, obs.run, index) for index in range(parallelism)]
    owners += [
        (parallelism + number - 1, view, 0)
        for number, view in enumerate(obs.extra_runs, 1)
        if view.exists
    ]
    shards = []
    for index, job, local in owners:
        completed, failed = agg.per_shard.get(index, (0, 0))
        restarts = max(job.restarts.get(local, 0), old_restarts.get(index, 0))
        shards.append(
            ShardStatus(
                index=index,
                state=_shard_state(job, local),
                completed=completed,
                failed=failed,
                restarts=restarts,
            )
        )
    return shards


def _shard_state(job: JobView, index: int) -> str:
    if index in job.completed_indexes:
        return "Succeeded"
    if index in job.failed_indexes:
        return "Failed"
    if index in job.running_indexes:
        return "Running"
    return "Pending"


def eta_verdict(status: BatchJobStatus, obs: Observation, phase: Phase) -> ConditionUpdate | None:
    """The ETA while running, and whether it is past the deadline."""
    agg = obs.aggregate
    if phase == Phase.RUNNING and agg and agg.eta is not None and obs.deadline is not None:
        status.eta = agg.eta
        late = agg.eta > obs.deadline
        # No moving ETA in the message: the condition changes only when the verdict does.
        return ConditionUpdate(
            ConditionType.SLA_AT_RISK,
            "True" if late else "False",
            Reason.ETA_PAST_DEADLINE if late else Reason.ETA_WITHIN_DEADLINE,
            f"status.eta is {'after' if late else 'before'} the deadline "
            f"{format_time(obs.deadline)}",
        )
    if phase != Phase.RUNNING:
        status.eta = None
    return None
