"""Condition types and reasons of a BatchJob, in one place (docs and alerts refer to them)."""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    # Spec checks beyond the schema passed (input exists, secret exists, model source parses).
    VALIDATED = "Validated"
    # The plan step wrote <output>/plan/plan.json (totals and chunks), or failed.
    PLANNED = "Planned"
    # The Job's pods are admitted and running.
    RUNNING = "Running"
    # The ETA is past the deadline.
    SLA_AT_RISK = "SLAAtRisk"
    SUSPENDED = "Suspended"
    # The shard count is being steered toward the deadline (spec.maxParallelism): True while
    # a change is wanted or under way, with the numbers behind the last decision.
    SCALING = "Scaling"
    # Terminal outcomes; exactly one of them is True once the job is finished.
    COMPLETE = "Complete"
    FAILED = "Failed"
    EXPIRED = "Expired"
    CANCELLED = "Cancelled"


class Reason(StrEnum):
    VALIDATION_PASSED = "ValidationPassed"
    VALIDATION_FAILED = "ValidationFailed"
    PLANNING = "Planning"
    PLANNED = "Planned"
    PLAN_FAILED = "PlanFailed"
    JOB_CREATED = "JobCreated"
    # The run Job (or RayJob) vanished while the batch ran, and was created again.
    JOB_RECREATED = "JobRecreated"
    PODS_PENDING = "PodsPending"
    PODS_RUNNING = "PodsRunning"
    SHARDS_COMPLETE = "ShardsComplete"
    FINALIZED = "Finalized"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    PERMANENT_ERROR = "PermanentError"
    FINALIZE_FAILED = "FinalizeFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    CANCEL_REQUESTED = "CancelRequested"
    SUSPEND_REQUESTED = "SuspendRequested"
    RESUMED = "Resumed"
    ETA_PAST_DEADLINE = "EtaPastDeadline"
    ETA_WITHIN_DEADLINE = "EtaWithinDeadline"
    # The Scaling condition (policy/scaling.py).
    SCALED_UP = "ScaledUp"
    SCALED_DOWN = "ScaledDown"
    SCALE_STEADY = "Steady"
    SCALE_MEASURING = "Measuring"
    WAITING_FOR_CAPACITY = "WaitingForCapacity"
    AT_MAX_PARALLELISM = "AtMaxParallelism"
    NEAR_DEADLINE = "NearDeadline"
    SCALE_COOLDOWN = "Cooldown"
    MAX_PARALLELISM_LOWERED = "MaxParallelismLowered"
    SHARDS_STOPPED = "ShardsStopped"
    SHARD_LOST = "ShardLost"
