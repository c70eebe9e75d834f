"""Small builders of what a pass observes: a BatchJob, Jobs, pods, progress documents, the
manifest, and the ``Observation`` the policies and ``decide`` take."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from llmbatch.api.documents import Manifest, ShardProgress
from llmbatch.api.plan import PlanSummary
from llmbatch.api.timefmt import format_time
from llmbatch.controller.actions import EventSpec
from llmbatch.controller.jobview import view_job
from llmbatch.controller.observation import Observation, read_batchjob, shard_aggregate
from llmbatch.controller.validation import ValidationResult

CREATED = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
OK = ValidationResult.passed(input_size=1234)


def batchjob(
    status: dict[str, Any] | None = None, *, name: str = "demo", generation: int = 1, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": "tiny-qwen", "source": "/models/tiny"},
        "input": "s3://llmbatch/in/demo.jsonl",
        "output": "s3://llmbatch/out/demo/",
        "completionWindow": "1h",
        "parallelism": 2,
        "storage": {"secretRef": {"name": "llmbatch-s3"}},
    }
    body.update(spec)
    return {
        "apiVersion": "llmbatch.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": "uid-1",
            "generation": generation,
            "creationTimestamp": format_time(CREATED),
        },
        "spec": body,
        "status": status or {},
    }


def at(minutes: float) -> datetime:
    return CREATED + timedelta(minutes=minutes)


def job(
    *,
    name: str = "demo-run",
    suspend: bool = False,
    active: int = 0,
    complete: bool = False,
    failed_reason: str | None = None,
    completed_indexes: str = "",
    failed_indexes: str | None = None,
) -> dict[str, Any]:
    conditions = []
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    if failed_reason:
        conditions.append(
            {"type": "Failed", "status": "True", "reason": failed_reason, "message": "failed"}
        )
    status: dict[str, Any] = {
        "active": active,
        "completedIndexes": completed_indexes,
        "conditions": conditions,
    }
    if failed_indexes is not None:
        status["failedIndexes"] = failed_indexes
    return {"metadata": {"name": name}, "spec": {"suspend": suspend}, "status": status}


def pod(
    index: int, phase: str = "Running", exit_code: int | None = None, terminating: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": f"demo-run-{index}-x",
        "labels": {"batch.kubernetes.io/job-completion-index": str(index)},
    }
    if terminating:
        meta["deletionTimestamp"] = format_time(CREATED)
    status: dict[str, Any] = {"phase": phase}
    if exit_code is not None:
        status["containerStatuses"] = [
            {"name": "runner", "state": {"terminated": {"exitCode": exit_code}}}
        ]
    return {"metadata": meta, "status": status}


def progress(
    shard: int,
    *,
    total: int | None = 10,
    completed: int = 0,
    failed: int = 0,
    state: str = "running",
    started: float = 1.0,
    updated: float = 2.0,
    throughput: float = 5.0,
) -> ShardProgress:
    return ShardProgress.model_validate(
        {
            "shard": shard,
            "shardCount": 2,
            "state": state,
            "total": total,
            "completed": completed,
            "failed": failed,
            "promptTokens": completed * 10,
            "completionTokens": completed * 8,
            "throughput": throughput,
            "startedAt": format_time(at(started)),
            "updatedAt": format_time(at(updated)),
            "attempt": 1,
        }
    )


def validated(phase: str, **extra: Any) -> dict[str, Any]:
    status = {
        "phase": phase,
        "jobName": "demo-run",
        "finalizeJobName": "demo-finalize",
        "conditions": [
            {
                "type": "Validated",
                "status": "True",
                "reason": "ValidationPassed",
                "message": "",
                "lastTransitionTime": format_time(CREATED),
            }
        ],
    }
    status.update(extra)
    return status


def finalize_job(*, complete: bool = False, failed: bool = False) -> dict[str, Any]:
    conditions = []
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    if failed:
        conditions.append({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"})
    return {"metadata": {"name": "demo-finalize"}, "spec": {}, "status": {"conditions": conditions}}


MANIFEST_COUNTS = {"total": 20, "completed": 18, "failed": 2}
MANIFEST = Manifest.model_validate(
    {
        "requestCounts": MANIFEST_COUNTS,
        "usage": {"promptTokens": 200, "completionTokens": 144},
        "sha256": {"input": "ab" * 32, "output": "cd" * 32, "errors": "ef" * 32},
    }
)


# The plan of demo's input (batchjob() above): 20 requests, 2 of them refused by the plan.
PLAN = PlanSummary(
    input="s3://llmbatch/in/demo.jsonl",
    input_bytes=4000,
    input_lines=20,
    total=20,
    runnable=18,
    invalid=2,
    prompt_tokens=900,
    token_counter="tokenizer",
    chunk_count=3,
)


def plan_job(
    *, active: int = 0, complete: bool = False, failed_reason: str | None = None
) -> dict[str, Any]:
    conditions = []
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    if failed_reason:
        conditions.append({"type": "Failed", "status": "True", "reason": failed_reason})
    return {
        "metadata": {"name": "demo-plan"},
        "spec": {},
        "status": {"active": active, "conditions": conditions},
    }


def plan_pod(exit_code: int, message: str = "") -> dict[str, Any]:
    """A plan pod that failed with ``exit_code``, its last words in the termination message."""
    terminated: dict[str, Any] = {"exitCode": exit_code}
    if message:
        terminated["message"] = message
    return {
        "metadata": {"name": "demo-plan-x"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": "runner", "state": {"terminated": terminated}}],
        },
    }


def observed(
    body: Mapping[str, Any],
    now: datetime,
    *,
    job: Mapping[str, Any] | None = None,
    finalize: Mapping[str, Any] | None = None,
    pods: Sequence[Mapping[str, Any]] = (),
    progress: Sequence[ShardProgress] = (),
    validation: ValidationResult | None = None,
    manifest: Manifest | None = None,
    estimated_total: int | None = None,
    plan: PlanSummary | None = None,
    plan_step: Mapping[str, Any] | None = None,
    plan_pods: Sequence[Mapping[str, Any]] = (),
) -> Observation:
    """The observation a pass would make of this world (what the I/O layer reads)."""
    obs = read_batchjob(body, now)
    obs = replace(
        obs,
        run=view_job(job, pods),
        finalize=view_job(finalize),
        plan_step=view_job(plan_step, plan_pods),
        plan=plan,
        validation=validation,
        manifest=manifest,
    )
    return replace(obs, aggregate=shard_aggregate(obs, progress, estimated_total))


def elastic_body(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """demo with shards to add: parallelism 1, maxParallelism 3, in Kueue's queue team-a."""
    fields: dict[str, Any] = {"parallelism": 1, "maxParallelism": 3, "queueName": "team-a"}
    fields.update(spec)
    return batchjob(status, **fields)


def running_obs(
    now: datetime,
    status_extra: dict[str, Any] | None = None,
    *,
    rate: float | None = 0.01,
    done: int = 0,
    extras: tuple[dict[str, Any] | None, ...] = (),
    extra_pods: tuple[list[dict[str, Any]], ...] = (),
    main_pods: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> Observation:
    """A pass over the running elastic batch: the run Job with shard 0's pod and progress, the
    extra Jobs (None where one is missing) with their pods, ``rate`` requests/s a shard."""
    status = validated("Running", **{"shardCount": 1, **(status_extra or {})})
    body = elastic_body(status, **spec)
    obs = observed(
        body,
        now,
        job=job(active=1),
        pods=main_pods if main_pods is not None else [pod(0)],
        validation=OK,
        plan=PLAN,
        progress=[progress(0, completed=done, updated=9)],
    )
    views = tuple(
        view_job(extra, extra_pods[i] if i < len(extra_pods) else [])
        for i, extra in enumerate(extras)
    )
    return replace(obs, shard_rate=rate, extra_runs=views)


def two_shards(
    now: datetime,
    *,
    scaled_up_at: datetime | None = None,
    rate: float | None = 0.01,
    extra_pod: dict[str, Any] | None = None,
    **spec: Any,
) -> Observation:
    """``running_obs`` at two shards, the second in its extra Job demo-run-1 with one pod
    (running unless ``extra_pod`` is given); the shard history says 1 -> 2 at ``scaled_up_at``
    when given."""
    status: dict[str, Any] = {"shardCount": 2}
    if scaled_up_at is not None:
        status["shardHistory"] = [
            {"time": format_time(scaled_up_at), "from": 1, "to": 2, "reason": "ScaledUp"}
        ]
    return running_obs(
        now,
        status,
        rate=rate,
        extras=(job(name="demo-run-1", active=1),),
        extra_pods=([extra_pod or pod(0)],),
        **spec,
    )


def scaling_events(events: list[EventSpec]) -> list[EventSpec]:
    """The pass's events but the plan's (the observed plan is new to the status)."""
    return [e for e in events if e.reason not in ("Planned", "PlanStarted")]


def condition(status: Mapping[str, Any], ctype: str) -> dict[str, Any]:
    """The condition of type ``ctype`` in a status as written (its wire form)."""
    found = [c for c in status.get("conditions") or [] if c["type"] == ctype]
    assert found, f"no {ctype} condition in {status.get('conditions')}"
    return dict(found[0])
