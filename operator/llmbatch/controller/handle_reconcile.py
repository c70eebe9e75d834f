"""The per-BatchJob reconcile: observe (as the fetch plan says), ``decide``, write status, act.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import kopf

from llmbatch.api.documents import ShardProgress
from llmbatch.api.phases import Phase
from llmbatch.api.plan import PlanSummary
from llmbatch.controller import handle_rayjob, handle_scaling, metrics, notify_delivery
from llmbatch.controller.actions import (
    Action,
    CreateFinalizeJob,
    CreatePlanJob,
    CreateRunJob,
    DeleteJobs,
    DeletePlanJob,
    SetRunJobSuspended,
)
from llmbatch.controller.backends import is_rayjob
from llmbatch.controller.build_jobs import build_finalize_job, build_plan_job, build_runner_job
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.decide import Decision, decide
from llmbatch.controller.handle_validate import load_secret, validate
from llmbatch.controller.jobview import view_job
from llmbatch.controller.kube import KubeError
from llmbatch.controller.kuberay import rayjob_name
from llmbatch.controller.names import finalize_job_name, plan_job_name, run_job_name
from llmbatch.controller.objects import (
    ProgressReader,
    estimate_lines,
    read_manifest,
    read_plan,
    storage_settings,
)
from llmbatch.controller.observation import Observation, read_batchjob, shard_aggregate
from llmbatch.controller.policy import deadline, rayjob, ttl
from llmbatch.controller.policy.fetch import FetchPlan, fetch_plan
from llmbatch.controller.runtime import Runtime, get_runtime
from llmbatch.controller.scaling_state import RateWindow
from llmbatch.storage import StorageError, StorageSettings

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
    progress_documents: list[ShardProgress] = field(default_factory=list)
    last_progress_read: float = float("-inf")
    failures: int = 0
    # The input's estimated line count; looked up once per process, only while running.
    estimated_total: int | None = None
    estimate_tried: bool = False
    # The llmbatch.io/notify annotation as last written by us (spec.notify webhook delivery).
    notify: str | None = None
    # The plan's summary: immutable, so read once per daemon (again after a restart).
    plan: PlanSummary | None = None
    # The shards' recent (time, done) samples: the per-shard rate the scaling policy uses.
    rates: RateWindow = field(default_factory=RateWindow)


def _current(body: Mapping[str, Any], memory: BatchJobMemory) -> dict[str, Any]:
    current = {key: body[key] for key in ("apiVersion", "kind", "metadata", "spec") if key in body}
    current["status"] = dict(
        memory.status if memory.status is not None else body.get("status") or {}
    )
    return current


async def _storage(
    runtime: Runtime, namespace: str, obs: Observation, memory: BatchJobMemory
) -> StorageSettings:
    """The storage settings of the batch, with the Secret's credentials (read once)."""
    spec = obs.checked_spec
    if not memory.secret_loaded:
        memory.secret, problem = await load_secret(runtime.api, namespace, spec)
        memory.secret_loaded = problem is None
    return storage_settings(spec, runtime.config, memory.secret)


async def observe(
    runtime: Runtime, batch: Mapping[str, Any], memory: BatchJobMemory, now: datetime
) -> Observation:
    """Parse the BatchJob once, then read what the fetch plan asks for."""
    config = runtime.config
    obs = read_batchjob(batch, now, stop_grace_seconds=config.expire_stop_grace_seconds)
    obs = rayjob.without_scaling(obs)
    plan = fetch_plan(obs)
    namespace = batch["metadata"]["namespace"]
    if plan.validate:
        result, memory.secret = await validate(runtime.api, namespace, obs.checked_spec, config)
        if plan.kuberay:
            result = await handle_rayjob.check_kuberay(runtime.api, result)
        memory.secret_loaded = not result.transient and result.ok
        obs = replace(obs, validation=result)
    if plan.wants_run_job(obs.validation):
        obs = await _read_jobs(runtime, namespace, obs, plan)
        obs = await handle_scaling.read_extra_runs(runtime, namespace, obs)
        obs = await _read_plan(runtime, namespace, obs, plan, memory)
        if plan.wants_progress(obs.run):
            await _read_progress(runtime, namespace, obs, memory)
        if plan.wants_manifest(obs.finalize):
            settings = await _storage(runtime, namespace, obs, memory)
            # A storage error propagates: the pass is retried rather than finishing the batch
            # without the manifest's exact counts.
            manifest = await asyncio.get_running_loop().run_in_executor(
                None, read_manifest, obs.checked_spec.output, settings
            )
            obs = replace(obs, manifest=manifest)
    aggregate = shard_aggregate(obs, memory.progress_documents, memory.estimated_total)
    obs = handle_scaling.with_rate(obs, memory.rates, memory.progress_documents)
    return replace(obs, aggregate=aggregate)


async def _read_jobs(
    runtime: Runtime, namespace: str, obs: Observation, plan: FetchPlan
) -> Observation:
    if plan.rayjob:
        obs = await handle_rayjob.read_rayjob(runtime.api, namespace, obs, plan)
    else:
        job = await runtime.api.get_job(namespace, obs.run_job)
        run = view_job(job)
        if plan.wants_pods(run):
            run = view_job(job, await runtime.api.list_pods(namespace, obs.run_job))
        obs = replace(obs, run=run)
    finalize = None
    if plan.finalize_job:
        finalize = await runtime.api.get_job(namespace, obs.finalize_job)
    return replace(obs, finalize=view_job(finalize))


async def _read_plan(
    runtime: Runtime, namespace: str, obs: Observation, plan: FetchPlan, memory: BatchJobMemory
) -> Observation:
    """The plan Job while planning, and plan.json once (kept in memory: it never changes)."""
    step = obs.plan_step
    if plan.wants_plan_job(obs.run):
        job = await runtime.api.get_job(namespace, obs.plan_job)
        step = view_job(job)
        if plan.wants_plan_pods(step):
            step = view_job(job, await runtime.api.list_pods(namespace, obs.plan_job))
    if plan.wants_plan(memory.plan is not None, obs.run, step):
        settings = await _storage(runtime, namespace, obs, memory)
        # A storage error propagates: the pass is retried rather than taking a plan step
        # that finished for one whose plan is missing.
        memory.plan = await asyncio.get_running_loop().run_in_executor(
            None, read_plan, obs.checked_spec.output, settings
        )
    return replace(obs, plan_step=step, plan=memory.plan)


async def _read_progress(
    runtime: Runtime, namespace: str, obs: Observation, memory: BatchJobMemory
) -> None:
    """At most every progress_write_interval: the status would not be written sooner."""
    if time.monotonic() - memory.last_progress_read < runtime.config.progress_write_interval:
        return
    spec = obs.checked_spec
    settings = await _storage(runtime, namespace, obs, memory)
    loop = asyncio.get_running_loop()
    try:
        memory.progress_documents = await loop.run_in_executor(
            None, memory.progress.read, spec.output, settings
        )
        memory.last_progress_read = time.monotonic()
    except StorageError as exc:
        logger.warning("%s: progress documents not readable: %s", spec.output, exc)
    unknown_total = any(doc.total is None for doc in memory.progress_documents)
    if unknown_total and not memory.estimate_tried and spec.input.startswith("s3://"):
        memory.estimate_tried = True
        try:
            memory.estimated_total = await loop.run_in_executor(
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
    memory.status = dict(result.get("status") or decision.wire)
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
            decision.status.reason,
        )
    # Events only once the status they describe is stored.
    for spec in decision.events:
        kopf.event(body, type=spec.type, reason=spec.reason, message=spec.message[:1000])
    return True


async def run_actions(
    runtime: Runtime,
    batch: Mapping[str, Any],
    actions: list[Action],
    now: datetime,
    *,
    rayjob: bool = False,
) -> None:
    """Carry out ``actions``; with ``rayjob`` (status.jobName names the batch's RayJob) the run
    actions act on the RayJob instead of the run Job."""
    meta = batch["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    for action in actions:
        if rayjob and await handle_rayjob.run_action(
            runtime.api, batch, action, runtime.config, now
        ):
            continue
        if isinstance(action, CreatePlanJob):
            created = await runtime.api.create_job(
                namespace, build_plan_job(batch, runtime.config, now)
            )
            logger.info("%s/%s: plan Job %s", namespace, name, "created" if created else "exists")
        elif isinstance(action, DeletePlanJob):
            await runtime.api.delete_job(namespace, plan_job_name(name))
        elif isinstance(action, CreateRunJob):
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
            if rayjob:
                # Its cluster and submitter Job go with it (KubeRay owns them).
                await runtime.api.delete_rayjob(namespace, rayjob_name(name))
            for job_name in (
                run_job_name(name),
                finalize_job_name(name),
                plan_job_name(name),
                *handle_scaling.extra_job_names(batch),
            ):
                await runtime.api.delete_job(namespace, job_name)
        else:
            await handle_scaling.run_scaling_action(runtime, batch, action, now)


def next_delay(config: OperatorConfig, obs: Observation, decision: Decision) -> float | None:
    """Seconds to the next pass; None when the daemon may exit (finished, nothing pending)."""
    phase = decision.phase
    if phase.is_terminal():
        left = ttl.seconds_to_expiry(obs, decision.status)
        # Past due: the Jobs were deleted in this pass, or are gone already.
        return left + 0.5 if left is not None and left > 0 else None
    if decision.actions:
        return AFTER_ACTION_DELAY
    if phase == Phase.VALIDATING:
        return VALIDATION_RETRY_DELAY
    delay = config.idle_interval if phase == Phase.SUSPENDED else config.active_interval
    to_deadline = deadline.seconds_to_deadline(obs)
    if to_deadline is not None and to_deadline > 0:
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
    batch = notify_delivery.overlay(_current(body, memory), memory.notify)
    try:
        obs = await observe(runtime, batch, memory, now)
        decision = decide(obs)
        if decision.rejected:
            logger.warning("%s: %s", obs.name, decision.rejected)
        if not await write_status(runtime, body, batch, decision, memory):
            return None
        rayjob = is_rayjob(decision.status.job_name, obs.name)
        await run_actions(runtime, batch, decision.actions, now, rayjob=rayjob)
        written = await notify_delivery.run(runtime, batch, decision.actions, now.timestamp())
        memory.notify = written or memory.notify
        delay = next_delay(runtime.config, obs, decision)
        return notify_delivery.next_delay(delay, obs, decision, written)
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
