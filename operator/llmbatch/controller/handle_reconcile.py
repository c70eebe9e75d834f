"""The per-BatchJob reconcile: observe, ``compute_status``, write status, then act.

One daemon per BatchJob runs ``reconcile_once`` every few seconds while the batch is not
finished (sooner when a watch event wakes it). Each pass is level-based and idempotent, so a
restart, a retry or a duplicate wake-up is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from llmbatch.api.phases import Phase
from llmbatch.controller import metrics
from llmbatch.controller.actions import (
    Action,
    CreateFinalizeJob,
    CreateRunJob,
    DeleteJobs,
    SetRunJobSuspended,
)
from llmbatch.controller.build_jobs import build_finalize_job, build_runner_job, deadline_of
from llmbatch.controller.compute import Decision, compute_status
from llmbatch.controller.handle_validate import load_secret, validate
from llmbatch.controller.jobview import view_job
from llmbatch.controller.kube import KubeError
from llmbatch.controller.names import finalize_job_name, run_job_name
from llmbatch.controller.objects import (
    ProgressReader,
    estimate_lines,
    read_manifest,
    storage_settings,
)
from llmbatch.controller.runtime import Runtime, get_runtime
from llmbatch.controller.timefmt import parse_time
from llmbatch.controller.validation import ValidationResult, check_spec
from llmbatch.storage import StorageError

logger = logging.getLogger(__name__)
# After acting, look again soon: the Job controller reacts within a second or two.
AFTER_ACTION_DELAY = 0.5
VALIDATION_RETRY_DELAY = 10.0


@dataclass
class BatchJobMemory:
    """What the daemon of one BatchJob keeps between passes (lost on restart, by design:
    everything needed to continue is in the cluster and in storage)."""

    # The status as last written by us; newer than the watch's copy until the event arrives.
    status: dict[str, Any] | None = None
    last_write: float = 0.0
    secret: dict[str, Any] | None = None
    secret_loaded: bool = False
    progress: ProgressReader = field(default_factory=ProgressReader)
    progress_objects: list[dict[str, Any]] = field(default_factory=list)
    last_progress_read: float = float("-inf")
    failures: int = 0
    # The input's estimated line count; looked up once per process, only while running.
    estimated_total: int | None = None
    estimate_tried: bool = False


def _current(body: Mapping[str, Any], memory: BatchJobMemory) -> dict[str, Any]:
    current = {key: body[key] for key in ("apiVersion", "kind", "metadata", "spec") if key in body}
    current["status"] = dict(
        memory.status if memory.status is not None else body.get("status") or {}
    )
    return current


async def _ensure_secret(
    runtime: Runtime, batch: Mapping[str, Any], memory: BatchJobMemory
) -> None:
    if memory.secret_loaded:
        return
    spec, _ = check_spec(batch.get("spec") or {})
    if spec is None:
        return
    memory.secret, problem = await load_secret(runtime.api, batch["metadata"]["namespace"], spec)
    memory.secret_loaded = problem is None


async def observe_and_decide(
    runtime: Runtime, batch: dict[str, Any], memory: BatchJobMemory, now: datetime
) -> Decision:
    meta = batch["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = batch["status"]
    phase = Phase(status["phase"]) if status.get("phase") else Phase.VALIDATING
    spec, problems = check_spec(batch.get("spec") or {})
    run_name, fin_name = run_job_name(name), finalize_job_name(name)

    if phase.is_terminal():
        ttl_due = spec is not None and spec.ttl_seconds_after_finished is not None
        job = await runtime.api.get_job(namespace, run_name) if ttl_due else None
        fin = await runtime.api.get_job(namespace, fin_name) if ttl_due else None
        return compute_status(batch, job, fin, [], [], now)

    validation: ValidationResult | None = None
    if not status.get("jobName") and spec is not None and not problems and not spec.cancel:
        validation, memory.secret = await validate(runtime.api, namespace, spec, runtime.config)
        memory.secret_loaded = not validation.transient and validation.ok
    job = fin = None
    pods: list[dict[str, Any]] = []
    manifest: dict[str, Any] | None = None
    if status.get("jobName") or (validation is not None and validation.ok):
        job = await runtime.api.get_job(namespace, run_name)
        run = view_job(job)
        idle = run.suspended and phase == Phase.SUSPENDED and spec is not None and not spec.cancel
        if job is not None and not run.complete and not idle:
            pods = await runtime.api.list_pods(namespace, run_name)
        if phase in (Phase.FINALIZING, Phase.CANCELLING):
            fin = await runtime.api.get_job(namespace, fin_name)
        active = phase in (Phase.QUEUED, Phase.RUNNING, Phase.FINALIZING, Phase.CANCELLING)
        if spec is not None and job is not None and active:
            await _read_progress(runtime, batch, memory, spec.output)
        if spec is not None and view_job(fin).complete:
            await _ensure_secret(runtime, batch, memory)
            settings = storage_settings(spec, runtime.config, memory.secret)
            # A storage error propagates: the pass is retried rather than finishing the batch
            # without the manifest's exact counts.
            manifest = await asyncio.get_running_loop().run_in_executor(
                None, read_manifest, spec.output, settings
            )
    return compute_status(
        batch,
        job,
        fin,
        pods,
        memory.progress_objects,
        now,
        validation=validation,
        manifest=manifest,
        stop_grace_seconds=runtime.config.expire_stop_grace_seconds,
        estimated_total=memory.estimated_total,
    )


async def _read_progress(
    runtime: Runtime, batch: Mapping[str, Any], memory: BatchJobMemory, output: str
) -> None:
    """At most every progress_write_interval: the status would not be written sooner."""
    if time.monotonic() - memory.last_progress_read < runtime.config.progress_write_interval:
        return
    await _ensure_secret(runtime, batch, memory)
    spec, _ = check_spec(batch.get("spec") or {})
    if spec is None:
        return
    settings = storage_settings(spec, runtime.config, memory.secret)
    try:
        memory.progress_objects = await asyncio.get_running_loop().run_in_executor(
            None, memory.progress.read, output, settings
        )
        memory.last_progress_read = time.monotonic()
    except StorageError as exc:
        logger.warning("%s: progress objects not readable: %s", output, exc)
    unknown_total = any(o.get("total") is None for o in memory.progress_objects)
    if unknown_total and not memory.estimate_tried and spec.input.startswith("s3://"):
        memory.estimate_tried = True
        try:
            memory.estimated_total = await asyncio.get_running_loop().run_in_executor(
                None, estimate_lines, spec.input, settings
            )
        except StorageError as exc:
            logger.warning("%s: input size not readable for an ETA: %s", spec.input, exc)


async def write_status(
    runtime: Runtime,
    body: Any,
    batch: Mapping[str, Any],
    decision: Decision,
    memory: BatchJobMemory,
) -> bool:
    """Write the status patch if there is one; True when the actions may run."""
    if not decision.patch:
        return True
    since = time.monotonic() - memory.last_write
    if decision.volatile_only and since < runtime.config.progress_write_interval:
        return True
    meta = batch["metadata"]
    try:
        result = await runtime.api.patch_batchjob_status(
            meta["namespace"], meta["name"], decision.patch
        )
    except KubeError as exc:
        if exc.status == 404:
            return False  # deleted meanwhile: the daemon stops with it
        raise
    memory.status = dict(result.get("status") or decision.status)
    memory.last_write = time.monotonic()
    metrics.STATUS_PATCHES.inc()
    if decision.transition is not None:
        before, after = decision.transition
        metrics.TRANSITIONS.labels(before or "", after).inc()
        logger.info(
            "%s/%s: %s -> %s (%s)",
            meta["namespace"],
            meta["name"],
            before,
            after,
            decision.status.get("reason"),
        )
    # Events only once the status they describe is stored.
    for spec in decision.events:
        kopf.event(body, type=spec.type, reason=spec.reason, message=spec.message[:1000])
    return True


async def run_actions(
    runtime: Runtime, batch: Mapping[str, Any], actions: list[Action], now: datetime
) -> None:
    meta = batch["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    for action in actions:
        if isinstance(action, CreateRunJob):
            created = await runtime.api.create_job(
                namespace, build_runner_job(batch, runtime.config, now)
            )
            logger.info("%s/%s: run Job %s", namespace, name, "created" if created else "exists")
        elif isinstance(action, SetRunJobSuspended):
            await runtime.api.patch_job(
                namespace, run_job_name(name), {"spec": {"suspend": action.suspend}}
            )
        elif isinstance(action, CreateFinalizeJob):
            await runtime.api.create_job(
                namespace, build_finalize_job(batch, runtime.config, action.reason)
            )
        elif isinstance(action, DeleteJobs):
            await runtime.api.delete_job(namespace, run_job_name(name))
            await runtime.api.delete_job(namespace, finalize_job_name(name))


def next_delay(
    runtime: Runtime, batch: Mapping[str, Any], decision: Decision, now: datetime
) -> float | None:
    """Seconds to the next pass; None when the daemon may exit (finished, nothing pending)."""
    phase = decision.phase
    spec = batch.get("spec") or {}
    if phase.is_terminal():
        ttl = spec.get("ttlSecondsAfterFinished")
        done_at = parse_time(decision.status.get("completionTime"))
        if ttl is None or done_at is None:
            return None
        due = (done_at - now).total_seconds() + int(ttl)
        # Past due: the Jobs were deleted in this pass, or are gone already.
        return due + 0.5 if due > 0 else None
    if decision.actions:
        return AFTER_ACTION_DELAY
    if phase == Phase.VALIDATING:
        return VALIDATION_RETRY_DELAY
    delay = (
        runtime.config.idle_interval if phase == Phase.SUSPENDED else runtime.config.active_interval
    )
    try:
        to_deadline = (deadline_of(batch) - now).total_seconds()
    except ValueError:
        return delay
    if to_deadline > 0:
        delay = min(delay, to_deadline + 0.5)
    return delay


def failure_delay(failures: int, exc: BaseException) -> float:
    """Pause before the next pass after ``failures`` failed passes in a row.

    Exponential up to 30 s, with jitter so that hundreds of BatchJobs hit by the same API
    outage do not come back in lockstep. A pause the server asked for (Retry-After, still
    answered after the API layer's own retries) is a floor.
    """
    delay = min(30.0, 2.0**failures) * random.uniform(0.5, 1.0)
    asked = exc.retry_after if isinstance(exc, KubeError) else None
    return max(delay, asked or 0.0)


async def reconcile_once(
    body: Any, memory: BatchJobMemory, runtime: Runtime | None = None
) -> float | None:
    runtime = runtime or get_runtime()
    started = time.monotonic()
    now = datetime.now(UTC)
    batch = _current(body, memory)
    try:
        decision = await observe_and_decide(runtime, batch, memory, now)
        if decision.rejected:
            logger.warning("%s: %s", batch["metadata"]["name"], decision.rejected)
        if not await write_status(runtime, body, batch, decision, memory):
            return None
        await run_actions(runtime, batch, decision.actions, now)
        return next_delay(runtime, batch, decision, now)
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)


async def batchjob_daemon(
    body: kopf.Body, uid: str | None, name: str | None, namespace: str | None
) -> None:
    """Kopf daemon body: loop until the BatchJob is finished (or deleted: kopf cancels us)."""
    runtime = get_runtime()
    memory = BatchJobMemory()
    key = uid or f"{namespace}/{name}"
    wake = runtime.wakers.register(key)
    try:
        while True:
            wake.clear()
            try:
                delay = await reconcile_once(body, memory, runtime)
                memory.failures = 0
            except Exception as exc:
                # API or storage trouble (or a bug): back off and retry; the traceback goes
                # to the log, the loop keeps the other BatchJobs' daemons unaffected.
                memory.failures += 1
                delay = failure_delay(memory.failures, exc)
                logger.warning(
                    "%s/%s: reconcile failed (retry in %.0fs): %s",
                    namespace,
                    name,
                    delay,
                    exc,
                    exc_info=not isinstance(exc, (KubeError, StorageError, OSError)),
                )
            if delay is None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
    finally:
        runtime.wakers.unregister(key)
