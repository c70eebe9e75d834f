"""Planning: before any GPU shard starts, a small CPU pod (the plan Job) streams the input
once, validates every line, counts the requests and prompt tokens, and cuts the work into
chunks under ``<output>/plan/``. The run Job is created only once ``plan.json`` exists, so the
status shows the exact total from the first minute and no shard waits on a bad input.

Planning happens in phase Queued (reason Planning; Suspended when spec.suspend is set: the plan
may finish, the shards wait). The Planned condition says how it went.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmbatch.api.conditions import ConditionType, Reason
from llmbatch.api.layout import OutputLayout
from llmbatch.api.phases import Phase
from llmbatch.api.plan import PlanSummary
from llmbatch.controller.actions import Action, CreatePlanJob, DeletePlanJob
from llmbatch.controller.policy.verdict import Verdict
from llmbatch.controller.status_conditions import ConditionUpdate

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation

# The tail of a failed plan pod's termination message quoted in the status message.
LAST_WORDS = 400


def summary(plan: PlanSummary) -> str:
    """The plan's totals in one line, for the Planned condition and its event."""
    counter = "by the model's tokenizer" if plan.token_counter == "tokenizer" else "estimated"
    return (
        f"{plan.total} request(s) in {plan.chunk_count} chunk(s), {plan.invalid} invalid; "
        f"{plan.prompt_tokens} prompt tokens ({counter})"
    )


def planned(obs: Observation) -> list[ConditionUpdate]:
    """Planned=True once plan.json was read; nothing before (the verdicts say the rest)."""
    if obs.plan is None:
        return []
    return [ConditionUpdate(ConditionType.PLANNED, "True", Reason.PLANNED, summary(obs.plan))]


def plan(obs: Observation) -> Verdict | None:
    """Before the run Job exists: plan first. None once the plan is there, or once the run
    Job exists (past planning, or a batch started before plans existed)."""
    if obs.run.exists:
        return None
    if obs.plan is not None:
        return _foreign_plan(obs, obs.plan)
    step = obs.plan_step
    if step.failed:
        return plan_failed(obs)
    if step.complete:
        return _failed(
            obs,
            f"the plan Job succeeded but {OutputLayout(obs.checked_spec.output).plan_summary} "
            "is not there; was the output prefix changed or cleaned meanwhile?",
        )
    return planning(obs)


def planning(obs: Observation) -> Verdict:
    """The plan pod runs (created now if need be); the shards wait for it."""
    spec, step = obs.checked_spec, obs.plan_step
    actions: tuple[Action, ...] = () if step.exists else (CreatePlanJob(),)
    doing = f"planning: the plan pod reads {spec.input} once, counts and chunks it"
    pending = ConditionUpdate(ConditionType.PLANNED, "Unknown", Reason.PLANNING, doing)
    if spec.suspend:
        return Verdict(
            Phase.SUSPENDED,
            Reason.SUSPEND_REQUESTED,
            "spec.suspend is true: the plan step may finish, no shard starts; clear it to resume",
            actions,
            conditions=(pending,),
        )
    return Verdict(Phase.QUEUED, Reason.PLANNING, doing, actions, conditions=(pending,))


def plan_failed(obs: Observation) -> Verdict:
    """The plan Job failed: exit 42 (the input cannot be used) fails it at once, other
    failures after its retries. Either way no shard may start."""
    step, spec = obs.plan_step, obs.checked_spec
    if step.permanent_error or step.failed_reason == "PodFailurePolicy":
        why = f"the plan step cannot use spec.input {spec.input}"
        fix = "fix the URI, upload the file, or fix the file's format"
    else:
        why = f"the plan step failed ({step.failed_reason or 'pod failed'}) reading {spec.input}"
        fix = "check that object storage is reachable and the Secret's credentials may read it"
    words = step.termination_message[-LAST_WORDS:]
    said = f": {words}" if words else ""
    return _failed(obs, f"{why}{said}; {fix}; see kubectl logs job/{obs.plan_job}")


def _foreign_plan(obs: Observation, found: PlanSummary) -> Verdict | None:
    """A plan written for another input (a reused output prefix) must not be run."""
    spec = obs.checked_spec
    if found.input == spec.input:
        return None
    return _failed(
        obs,
        f"{OutputLayout(spec.output).plan_summary} is the plan of {found.input}, not of "
        f"spec.input {spec.input}: the output prefix belongs to another batch; use a new one",
    )


def _failed(obs: Observation, message: str) -> Verdict:
    condition = ConditionUpdate(ConditionType.PLANNED, "False", Reason.PLAN_FAILED, message)
    return Verdict(Phase.FAILED, Reason.PLAN_FAILED, message, conditions=(condition,))


def cancel_before_run(obs: Observation) -> Verdict | None:
    """spec.cancel before any shard ran: stop the plan pod if it still runs, then Cancelled.
    Nothing ran, so there is nothing to finalize (as for a cancel before validation)."""
    if not obs.checked_spec.cancel or obs.run.exists or obs.finalize.exists:
        return None
    if obs.phase == Phase.FINALIZING:
        return None  # the deadline passed first: finalize records the lines as expired
    if obs.status.start_time is not None:
        return None  # shards ran and their Job was deleted since: finalize keeps their work
    step = obs.plan_step
    live = step.exists and not step.finished
    if obs.phase != Phase.CANCELLING or live:
        return Verdict(
            Phase.CANCELLING,
            Reason.CANCEL_REQUESTED,
            "spec.cancel is true: stopping the plan step; no request ran",
            (DeletePlanJob(),) if live else (),
        )
    return Verdict(
        Phase.CANCELLED,
        Reason.CANCEL_REQUESTED,
        "cancelled before any shard started; no request ran",
    )


def stop_plan_step(obs: Observation) -> tuple[Action, ...]:
    """When the batch stops before its shards ran (the deadline passed while planning): the
    plan pod is stopped before finalize starts, so nothing writes under the output then."""
    step = obs.plan_step
    return (DeletePlanJob(),) if step.exists and not step.finished else ()
