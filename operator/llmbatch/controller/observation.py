"""One pass's view of a BatchJob: the spec parsed once, and everything the policies look at.

``read_batchjob`` parses the BatchJob (spec, deadline, the status as last written); the I/O
layer then fills in what the fetch plan asked it to read (Job views, shard progress, manifest,
validation). The policies and ``decide`` take the result and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmbatch.api.batchjob import BatchJobSpec, BatchJobStatus
from llmbatch.api.documents import Manifest, ShardProgress
from llmbatch.api.phases import Phase
from llmbatch.api.plan import PlanSummary
from llmbatch.api.timefmt import parse_time
from llmbatch.controller.aggregate import Aggregate, aggregate
from llmbatch.controller.jobview import JobView
from llmbatch.controller.names import finalize_job_name, plan_job_name, run_job_name
from llmbatch.controller.policy.deadline import deadline_of
from llmbatch.controller.policy.scaling import ScalingSettings
from llmbatch.controller.status import parse_status
from llmbatch.controller.validation import ValidationResult, check_spec


@dataclass(frozen=True)
class Observation:
    name: str
    generation: int | None
    created: datetime | None
    now: datetime
    # The status as last written (by us, or as the watch delivered it).
    status: BatchJobStatus
    spec: BatchJobSpec | None
    # What check_spec found wrong beyond the schema; the spec is None when it did not parse.
    problems: tuple[str, ...] = ()
    deadline: datetime | None = None
    # After the deadline, how long shards get to stop by themselves (recording their lines as
    # batch_expired) before the operator suspends the Job.
    stop_grace_seconds: float = 45.0
    run: JobView = field(default_factory=JobView)
    finalize: JobView = field(default_factory=JobView)
    plan_step: JobView = field(default_factory=JobView)
    # The extra shards' Jobs (spec.maxParallelism): item n-1 is <name>-run-<n>.
    extra_runs: tuple[JobView, ...] = ()
    # The numbers n of those marked for deletion (they stay until their pod is gone).
    extra_deleting: frozenset[int] = frozenset()
    # The operator's scaling settings (handle_scaling.read_extra_runs brings them in).
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    # Requests/s of one producing shard over the recent window (scaling_state.RateWindow).
    shard_rate: float | None = None
    # <output>/plan/plan.json once the plan step wrote it (immutable: read once per daemon).
    plan: PlanSummary | None = None
    aggregate: Aggregate | None = None
    manifest: Manifest | None = None
    validation: ValidationResult | None = None
    uid: str = ""
    # Our own bookkeeping on the object (llmbatch.io/ annotations, e.g. webhook delivery).
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def current(self) -> Phase | None:
        """The phase as last written; None before the first write."""
        return self.status.phase

    @property
    def phase(self) -> Phase:
        return self.status.phase or Phase.VALIDATING

    @property
    def checked_spec(self) -> BatchJobSpec:
        """The spec, for the policies that run only once it parsed."""
        if self.spec is None:
            raise ValueError("the BatchJob's spec does not parse")
        return self.spec

    @property
    def due(self) -> datetime:
        """The deadline, for the policies that run only once the spec parsed."""
        if self.deadline is None:
            raise ValueError("the BatchJob has no deadline")
        return self.deadline

    @property
    def run_job(self) -> str:
        return self.status.job_name or run_job_name(self.name)

    @property
    def finalize_job(self) -> str:
        return self.status.finalize_job_name or finalize_job_name(self.name)

    @property
    def plan_job(self) -> str:
        return self.status.plan_job_name or plan_job_name(self.name)


def read_batchjob(
    batchjob: Mapping[str, Any], now: datetime, *, stop_grace_seconds: float = 45.0
) -> Observation:
    """Parse the BatchJob once for the pass. Raises ValueError when a valid spec has no
    creationTimestamp to count the deadline from (the API server always sets one)."""
    meta: Mapping[str, Any] = batchjob.get("metadata") or {}
    spec, problems = check_spec(batchjob.get("spec") or {})
    generation = meta.get("generation")
    return Observation(
        name=str(meta.get("name", "")),
        generation=int(generation) if generation is not None else None,
        created=parse_time(meta.get("creationTimestamp")),
        now=now,
        status=parse_status(batchjob.get("status")),
        spec=spec,
        problems=tuple(problems),
        deadline=deadline_of(meta, spec) if spec is not None else None,
        stop_grace_seconds=stop_grace_seconds,
        uid=str(meta.get("uid") or ""),
        annotations=dict(meta.get("annotations") or {}),
    )


def shard_aggregate(
    obs: Observation, documents: Sequence[ShardProgress], estimated_total: int | None
) -> Aggregate | None:
    """The shards' progress summed for the status; None before any shard reported. With a
    plan, the shards share one total (the plan's runnable lines) whatever they report."""
    if obs.spec is None or not documents:
        return None
    planned = obs.plan.runnable if obs.plan is not None else None
    shards = max(obs.spec.shard_ceiling, obs.status.shard_count or 0)
    return aggregate(documents, shards, obs.now, estimated_total, planned)
