"""What one pass must read for the phase the batch is in: the one place that decides it, so
the I/O layer never repeats the state machine to choose its reads.

The flags come from the observation as parsed (phase, status, spec); the ``wants_*`` methods
add what only an earlier read can tell (the Job exists, has completed, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmbatch.api.phases import Phase
from llmbatch.controller.backends import runs_rayjob, uses_rayjob
from llmbatch.controller.jobview import JobView
from llmbatch.controller.validation import ValidationResult

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation

# The phases whose shards may be writing progress documents.
_PROGRESS_PHASES = frozenset({Phase.QUEUED, Phase.RUNNING, Phase.FINALIZING, Phase.CANCELLING})
_STOPPING_PHASES = frozenset({Phase.FINALIZING, Phase.CANCELLING})


@dataclass(frozen=True)
class FetchPlan:
    # Run the I/O checks (storage Secret, input object): not validated yet, nothing refuses.
    validate: bool = False
    # With the checks, ask the API whether KubeRay's RayJob exists (spec.ray.workers).
    kuberay: bool = False
    # Read the run Job: once it is named (when validating: once the checks passed).
    run_job: bool = False
    # The run child is the batch's KubeRay RayJob (status.jobName says so): read it, and list
    # its head and worker pods by label, instead of the run Job and its pods.
    rayjob: bool = False
    # List the run Job's pods while it has any to report (not while idle in Suspended).
    pods: bool = False
    pods_while_suspended: bool = True
    finalize_job: bool = False
    # Read the plan Job while the run Job does not exist (planning, or about to run).
    plan_job: bool = False
    # Read <output>/plan/plan.json until it has been read once (it is immutable).
    plan: bool = False
    # Read the shards' progress documents while they may be writing them.
    progress: bool = False
    # Read the manifest once the finalize Job has completed.
    manifest: bool = False

    def wants_run_job(self, validation: ValidationResult | None) -> bool:
        if not self.validate:
            return self.run_job
        return self.run_job and validation is not None and validation.ok

    def wants_pods(self, run: JobView) -> bool:
        idle = run.suspended and not self.pods_while_suspended
        return self.pods and run.exists and not run.complete and not idle

    def wants_plan_job(self, run: JobView) -> bool:
        return self.plan_job and not run.exists

    def wants_plan_pods(self, step: JobView) -> bool:
        """Only a failed plan pod has something to say (its termination message)."""
        return step.failed

    def wants_plan(self, cached: bool, run: JobView, step: JobView) -> bool:
        """Once: when the plan step finished, when the run Job exists (a restarted operator),
        or before the plan Job is created (a plan already written is not made again)."""
        return self.plan and not cached and (run.exists or step.complete or not step.exists)

    def wants_progress(self, run: JobView) -> bool:
        return self.progress and run.exists

    def wants_manifest(self, finalize: JobView) -> bool:
        return self.manifest and finalize.complete


def fetch_plan(obs: Observation) -> FetchPlan:
    spec, phase = obs.spec, obs.phase
    if spec is None:
        return FetchPlan()  # nothing to look at: the batch fails validation
    if phase.is_terminal():
        # Only the TTL still acts: it deletes the Jobs that exist.
        ttl = spec.ttl_seconds_after_finished is not None
        return FetchPlan(run_job=ttl, rayjob=runs_rayjob(obs), finalize_job=ttl, plan_job=ttl)
    named = bool(obs.status.job_name)
    validate = not named and not obs.problems and not spec.cancel
    return FetchPlan(
        validate=validate,
        kuberay=validate and uses_rayjob(spec),
        run_job=named or validate,
        rayjob=runs_rayjob(obs),
        pods=True,
        pods_while_suspended=phase != Phase.SUSPENDED or spec.cancel,
        finalize_job=phase in _STOPPING_PHASES,
        plan_job=named,
        plan=named,
        progress=phase in _PROGRESS_PHASES,
        manifest=True,
    )
