"""The BatchJob state machine: the policies composed in order over one observation.

``decide`` looks at what is (an ``Observation``: the BatchJob, its Jobs and pods, the shards'
progress, the manifest, the clock) and returns the status that describes it, the merge patch
from the old status, the actions that move the world forward and the events to post once the
status write has succeeded. It is level-based: the same observation gives the same answer and
no new actions beyond re-issuing idempotent ones. A move the transitions table refuses keeps
the phase (forward only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmbatch.api.batchjob import BatchJobStatus, Timestamps
from llmbatch.api.conditions import ConditionType
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import Action, EventSpec
from llmbatch.controller.backends import run_child_name
from llmbatch.controller.events import (
    plan_event,
    recreated_event,
    sla_event,
    transition_event,
)
from llmbatch.controller.names import finalize_job_name, plan_job_name
from llmbatch.controller.observation import Observation
from llmbatch.controller.phase_status import phase_conditions, record_phase
from llmbatch.controller.policy import (
    cancel_suspend,
    deadline,
    elastic,
    failure,
    notify,
    planning,
    progress,
    rayjob,
    running,
    stopping,
    ttl,
    validation,
)
from llmbatch.controller.policy.verdict import Verdict
from llmbatch.controller.status import VOLATILE_FIELDS, status_patch, to_wire
from llmbatch.controller.status_conditions import (
    ConditionUpdate,
    condition_is_true,
    set_condition,
)
from llmbatch.controller.transitions import is_allowed


@dataclass
class Decision:
    status: BatchJobStatus
    patch: dict[str, Any]
    actions: list[Action] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    transition: tuple[str | None, str] | None = None
    # A move the transitions table refused (logged, never applied).
    rejected: str | None = None
    sla_changed: bool = False

    @property
    def phase(self) -> Phase:
        return self.status.phase or Phase.VALIDATING

    @property
    def wire(self) -> dict[str, Any]:
        """The new status as written to the API."""
        return to_wire(self.status)

    @property
    def volatile_only(self) -> bool:
        return bool(self.patch) and set(self.patch) <= VOLATILE_FIELDS


def decide(obs: Observation) -> Decision:
    obs = rayjob.without_scaling(obs)
    status = _carried_over(obs)
    if obs.spec is None:
        return _conclude(obs, status, validation.invalid_spec(obs))
    if obs.current is not None and obs.current.is_terminal():
        actions = [*ttl.expired_jobs(obs), *notify.deliveries(obs, status)]
        return Decision(status=status, patch=status_patch(obs.status, status), actions=actions)
    return _conclude(obs, status, _choose(obs, status))


def _carried_over(obs: Observation) -> BatchJobStatus:
    """The old status with what every pass refreshes: creation time, generation, deadline."""
    status = obs.status.model_copy(deep=True)
    status.timestamps = status.timestamps or Timestamps()
    if status.timestamps.created_at is None:
        status.timestamps.created_at = obs.created or obs.now
    if obs.generation is not None:
        status.observed_generation = obs.generation
    if obs.deadline is not None:
        status.deadline = obs.deadline
    return status


def _choose(obs: Observation, status: BatchJobStatus) -> Verdict:
    if not status.job_name:
        before = cancel_suspend.cancel_before_start(obs) or validation.verdict(obs)
        if before is not None:
            return before
        # Names go into status before the Jobs exist: a restarted operator looks them up
        # instead of creating a second set. jobName also fixes the form: the run Job, or the
        # RayJob of spec.ray.workers (backends.py).
        status.job_name = run_child_name(obs.checked_spec, obs.name)
        status.finalize_job_name = finalize_job_name(obs.name)
        status.plan_job_name = plan_job_name(obs.name)
        _apply(status, obs, [validation.passed(obs)])
    _apply(status, obs, planning.planned(obs))
    before_run = planning.cancel_before_run(obs)
    if before_run is not None:
        return before_run
    stop = (
        stopping.stop_in_progress(obs)
        or cancel_suspend.cancel(obs)
        or stopping.shards_complete(obs)
        or deadline.expiry(obs)
    )
    if stop is not None:
        return elastic.steer(obs, status, stopping.proceed(obs, stop))
    return elastic.steer(
        obs,
        status,
        failure.shard_failure(obs)
        or planning.plan(obs)
        or rayjob.form_lost(obs)
        or cancel_suspend.suspend(obs)
        or running.run(obs),
    )


def _guard(obs: Observation, verdict: Verdict) -> tuple[Verdict, str | None]:
    """Forward only: a refused move keeps the phase, reason and message, and runs nothing."""
    if is_allowed(obs.phase, verdict.phase):
        return verdict, None
    kept = Verdict(obs.phase, obs.status.reason or "", obs.status.message or "")
    return kept, f"{obs.phase} -> {verdict.phase} is not an allowed transition"


def _apply(status: BatchJobStatus, obs: Observation, updates: list[ConditionUpdate]) -> None:
    for update in updates:
        status.conditions = set_condition(status.conditions, update, obs.now, obs.generation)


def _conclude(obs: Observation, status: BatchJobStatus, chosen: Verdict) -> Decision:
    _apply(status, obs, list(chosen.conditions))
    verdict, rejected = _guard(obs, chosen)
    record_phase(status, verdict, obs.now)
    _apply(status, obs, phase_conditions(status, verdict))
    sla = progress.record(status, obs, verdict.phase)
    _apply(status, obs, [sla] if sla is not None else [])
    was_at_risk = condition_is_true(obs.status.conditions, ConditionType.SLA_AT_RISK)
    at_risk = condition_is_true(status.conditions, ConditionType.SLA_AT_RISK)
    events = [
        e
        for e in [
            plan_event(obs.status.conditions, status),
            transition_event(obs.current, status),
            recreated_event(obs.status, status),
            elastic.scaling_event(obs.status.conditions, status),
        ]
        if e is not None
    ]
    if at_risk != was_at_risk:
        events.append(sla_event(at_risk, status))
    transition = None
    if obs.current != verdict.phase:
        transition = (obs.current.value if obs.current else None, verdict.phase.value)
    return Decision(
        status=status,
        patch=status_patch(obs.status, status),
        # The webhook goes out after the status write that made the batch terminal.
        actions=[*verdict.actions, *notify.deliveries(obs, status)],
        events=events,
        transition=transition,
        rejected=rejected,
        sla_changed=at_risk != was_at_risk,
    )
