"""The sandbox's batch/v1 Job controller: watches Jobs and pods over HTTP and drives each Job the
way kube-controller-manager does (pod creation up to parallelism, Indexed completion tracking,
backoff limits global and per index, podFailurePolicy, activeDeadlineSeconds, suspend,
ttlSecondsAfterFinished and the FailureTarget/SuccessCriteriaMet -> Failed/Complete conditions).

Terminated pods are counted once, then their ``batch.kubernetes.io/job-tracking`` finalizer is
removed, as on a cluster: a deleted pod stays until its end has been counted."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from llmbatch.api.timefmt import now_rfc3339, parse_time, seconds_since
from llmbatch_sandbox.events import record_event
from llmbatch_sandbox.informer import Informer, Key, object_key
from llmbatch_sandbox.jobcontroller import conditions as cond
from llmbatch_sandbox.jobcontroller.failurepolicy import match_pod_failure_policy
from llmbatch_sandbox.jobcontroller.indexes import format_indexes, parse_indexes
from llmbatch_sandbox.jobcontroller.podbuilder import (
    JOB_NAME_LABEL,
    TRACKING_FINALIZER,
    build_pod,
    controller_uid,
    is_indexed,
    pod_index,
)
from llmbatch_sandbox.kubeapi import ApiError, JsonObject, KubeApi, object_path

log = logging.getLogger(__name__)

MAX_INT32 = 2**31 - 1
DEFAULT_BACKOFF_LIMIT = 6


@dataclass
class JobTracking:
    """What the controller has counted for one Job (by uid). Seeded from the Job's status the
    first time the Job is seen, then the only source of the counters it writes."""

    succeeded: int = 0
    failed: int = 0
    completed_indexes: set[int] = field(default_factory=set)
    failed_indexes: set[int] = field(default_factory=set)
    counted: set[str] = field(default_factory=set)
    index_failures: dict[int, int] = field(default_factory=dict)
    index_ignored: dict[int, int] = field(default_factory=dict)
    # Pods the controller stopped itself (suspend, parallelism lowered): not failures.
    released_pods: set[str] = field(default_factory=set)
    outcome: cond.Outcome | None = None
    not_before: float = 0.0
    recent_failures: int = 0


def _phase(pod: JsonObject) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _terminal(pod: JsonObject) -> bool:
    return _phase(pod) in ("Succeeded", "Failed")


def _deleting(pod: JsonObject) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _ready(pod: JsonObject) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _created(pod: JsonObject) -> tuple[str, str]:
    meta = pod["metadata"]
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


class JobController:
    """Run with :meth:`start` / :meth:`stop`. ``backoff_base`` is the delay before a failed pod
    is replaced, doubled per failure up to ``backoff_cap`` (Kubernetes uses 10 s and 6 min;
    the sandbox defaults are shorter so that tests and demos do not wait)."""

    def __init__(self, api: KubeApi, backoff_base: float = 1.0, backoff_cap: float = 30.0) -> None:
        self.api = api
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.jobs = Informer(api, "/apis/batch/v1/jobs", self._on_job)
        self.pods = Informer(api, "/api/v1/pods", self._on_pod)
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._tracking: dict[str, JobTracking] = {}
        self._worker: asyncio.Task[None] | None = None
        self._timers: dict[Key, asyncio.TimerHandle] = {}

    async def start(self) -> None:
        self.pods.start()
        self.jobs.start()
        await asyncio.wait_for(
            asyncio.gather(self.pods.synced.wait(), self.jobs.synced.wait()), timeout=10
        )
        self._worker = asyncio.create_task(self._work(), name="job controller")

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self.jobs.stop()
        await self.pods.stop()

    # -- queueing ------------------------------------------------------------------------

    def enqueue(self, key: Key) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def enqueue_after(self, key: Key, delay: float) -> None:
        """Reconcile ``key`` again after ``delay`` seconds. Only the earliest pending timer per
        Job is kept: that reconcile schedules whatever comes later."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(delay, 0.0)
        current = self._timers.get(key)
        if current is not None and not current.cancelled() and loop.time() < current.when():
            if current.when() <= when:
                return
            current.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    def _on_job(self, kind: str, job: JsonObject) -> None:
        self.enqueue(object_key(job))

    def _on_pod(self, kind: str, pod: JsonObject) -> None:
        meta = pod["metadata"]
        job_name = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
        if job_name:
            self.enqueue((str(meta.get("namespace") or ""), str(job_name)))

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                log.debug("job %s/%s: %s; retrying", key[0], key[1], error)
                self.enqueue_after(key, 0.5)
            except Exception:
                log.exception("job %s/%s: reconcile failed; retrying", key[0], key[1])
                self.enqueue_after(key, 1.0)

    # -- reconcile -----------------------------------------------------------------------

    def _pods_of(self, namespace: str, uid: str) -> list[JsonObject]:
        pods = [
            pod
            for (ns, _), pod in self.pods.cache.items()
            if ns == namespace and controller_uid(pod) == uid
        ]
        return sorted(pods, key=_created)

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        job = self.jobs.cache.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            await self._release_orphans(namespace, name, None)
            return
        managed_by = (job.get("spec") or {}).get("managedBy")
        if managed_by and managed_by != "kubernetes.io/job-controller":
            return  # another controller (e.g. MultiKueue) owns this Job's status
        uid = str(job["metadata"]["uid"])
        await self._release_orphans(namespace, name, uid)
        tracking = self._tracking.get(uid)
        if tracking is None:
            tracking = self._tracking[uid] = self._seed(job)
        pods = self._pods_of(namespace, uid)
        status: JsonObject = dict(job.get("status") or {})
        conditions: list[JsonObject] = list(status.get("conditions") or [])
        now = now_rfc3339()
        finished = cond.is_true(conditions, cond.COMPLETE) or cond.is_true(conditions, cond.FAILED)

        if not finished:
            self._count_finished_pods(job, pods, tracking)
            conditions, status = await self._drive(job, pods, tracking, conditions, status, now)

        await self._write_status(job, pods, tracking, conditions, status)
        await self._release_counted(pods, tracking, everything_ended=finished)
        if finished:
            await self._after_finish(job, pods, conditions)

    def _seed(self, job: JsonObject) -> JobTracking:
        status = job.get("status") or {}
        completions = (job.get("spec") or {}).get("completions")
        return JobTracking(
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            completed_indexes=parse_indexes(status.get("completedIndexes"), completions),
            failed_indexes=parse_indexes(status.get("failedIndexes"), completions),
        )

    def _count_finished_pods(
        self, job: JsonObject, pods: list[JsonObject], tracking: JobTracking
    ) -> None:
        """Fold every newly terminated pod into the counters, applying podFailurePolicy."""
        spec = job.get("spec") or {}
        completions = _completions(spec)
        indexed = is_indexed(job)
        per_index_limit = spec.get("backoffLimitPerIndex")
        for pod in pods:
            pod_uid = str(pod["metadata"]["uid"])
            if pod_uid in tracking.counted or not _terminal(pod):
                continue
            tracking.counted.add(pod_uid)
            index = pod_index(pod, completions) if indexed else None
            if _phase(pod) == "Succeeded":
                tracking.recent_failures = 0  # back-off counts failures since the last success
                if not indexed:
                    tracking.succeeded += 1
                elif index is not None and index not in tracking.completed_indexes:
                    tracking.completed_indexes.add(index)
                    tracking.failed_indexes.discard(index)
                    tracking.succeeded += 1
                continue
            if pod_uid in tracking.released_pods:
                continue
            match = match_pod_failure_policy(spec.get("podFailurePolicy"), pod)
            action = match.action if match else "Count"
            if action == "Ignore":
                if index is not None:
                    tracking.index_ignored[index] = tracking.index_ignored.get(index, 0) + 1
                continue
            tracking.failed += 1
            tracking.recent_failures += 1
            delay = min(self.backoff_cap, self.backoff_base * 2 ** (tracking.recent_failures - 1))
            tracking.not_before = max(tracking.not_before, time.monotonic() + delay)
            if action == "FailJob" and match is not None and tracking.outcome is None:
                tracking.outcome = cond.pod_failure_policy_outcome(match.message)
            elif action == "FailIndex" and index is not None and per_index_limit is not None:
                tracking.failed_indexes.add(index)
            elif index is not None and per_index_limit is not None:
                count = tracking.index_failures.get(index, 0) + 1
                tracking.index_failures[index] = count
                if count > int(per_index_limit):
                    tracking.failed_indexes.add(index)

    def _decide_outcome(
        self,
        job: JsonObject,
        pods: list[JsonObject],
        tracking: JobTracking,
        status: JsonObject,
        suspended: bool,
    ) -> cond.Outcome | None:
        spec = job.get("spec") or {}
        completions = _completions(spec)
        per_index = spec.get("backoffLimitPerIndex") is not None
        backoff_limit = spec.get("backoffLimit")
        if backoff_limit is None:
            backoff_limit = MAX_INT32 if per_index else DEFAULT_BACKOFF_LIMIT
        max_failed = spec.get("maxFailedIndexes")
        # The order of Kubernetes' syncJob: podFailurePolicy FailJob, backoffLimit, deadline,
        # maxFailedIndexes, then all indexes ended.
        if tracking.outcome is not None:
            return tracking.outcome
        if tracking.failed + _restarts(job, pods) > int(backoff_limit):
            return cond.BACKOFF_LIMIT_EXCEEDED
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and not suspended:
            elapsed = seconds_since(status.get("startTime"))
            if elapsed is not None and elapsed >= float(deadline):
                return cond.DEADLINE_EXCEEDED
        if per_index and max_failed is not None and len(tracking.failed_indexes) > max_failed:
            return cond.MAX_FAILED_INDEXES_EXCEEDED
        if is_indexed(job) and completions is not None:
            done = tracking.completed_indexes | tracking.failed_indexes
            if len(done & set(range(completions))) >= completions:
                return cond.FAILED_INDEXES if tracking.failed_indexes else cond.COMPLETIONS_REACHED
            return None
        if completions is None:
            return cond.COMPLETIONS_REACHED if tracking.succeeded > 0 else None
        return cond.COMPLETIONS_REACHED if tracking.succeeded >= completions else None

    async def _drive(
        self,
        job: JsonObject,
        pods: list[JsonObject],
        tracking: JobTracking,
        conditions: list[JsonObject],
        status: JsonObject,
        now: str,
    ) -> tuple[list[JsonObject], JsonObject]:
        spec = job.get("spec") or {}
        key = object_key(job)
        suspended = bool(spec.get("suspend"))
        active = [pod for pod in pods if not _terminal(pod)]

        outcome = self._decide_outcome(job, pods, tracking, status, suspended)
        if outcome is not None:
            tracking.outcome = outcome
            target = cond.SUCCESS_CRITERIA_MET if outcome.success else cond.FAILURE_TARGET
            if not cond.is_true(conditions, target):
                conditions = cond.set_condition(
                    conditions, target, "True", outcome.reason, outcome.message, now
                )
                announced = (
                    cond.Outcome(True, "Completed", "Job completed") if outcome.success else outcome
                )
                await self._event(job, "Normal" if outcome.success else "Warning", announced)
            await self._delete_pods(job, active)
            if not active:
                final = cond.COMPLETE if outcome.success else cond.FAILED
                conditions = cond.set_condition(
                    conditions, final, "True", outcome.reason, outcome.message, now
                )
                if outcome.success:
                    status["completionTime"] = now
                self.enqueue_after(key, 0)  # TTL bookkeeping runs on the finished Job
            return conditions, status

        if suspended:
            tracking.released_pods.update(str(p["metadata"]["uid"]) for p in active)
            await self._delete_pods(job, active)
            if not cond.is_true(conditions, cond.SUSPENDED):
                conditions = cond.set_condition(
                    conditions, cond.SUSPENDED, "True", "JobSuspended", "Job suspended", now
                )
                await self._event(job, "Normal", cond.Outcome(True, "Suspended", "Job suspended"))
            return conditions, status

        if cond.is_true(conditions, cond.SUSPENDED):
            conditions = cond.set_condition(
                conditions, cond.SUSPENDED, "False", "JobResumed", "Job resumed", now
            )
            status["startTime"] = now
            await self._event(job, "Normal", cond.Outcome(True, "Resumed", "Job resumed"))
        if not status.get("startTime"):
            status["startTime"] = now
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None:
            elapsed = seconds_since(status.get("startTime")) or 0.0
            self.enqueue_after(key, float(deadline) - elapsed + 0.05)
        await self._create_pods(job, pods, tracking)
        return conditions, status

    async def _create_pods(
        self, job: JsonObject, pods: list[JsonObject], tracking: JobTracking
    ) -> None:
        spec = job.get("spec") or {}
        completions = _completions(spec)
        parallelism = int(spec.get("parallelism", 1))
        active = [pod for pod in pods if not _terminal(pod)]
        running = [pod for pod in active if not _deleting(pod)]
        excess = len(running) - parallelism
        if excess > 0:
            # Parallelism was lowered: stop the newest (highest index) pods.
            victims = sorted(
                running, key=lambda p: (pod_index(p, completions) or 0, _created(p)), reverse=True
            )[:excess]
            tracking.released_pods.update(str(p["metadata"]["uid"]) for p in victims)
            await self._delete_pods(job, victims)
            return
        room = parallelism - len(active)
        if room <= 0:
            return
        wait = tracking.not_before - time.monotonic()
        if wait > 0:
            self.enqueue_after(object_key(job), wait)
            return
        if is_indexed(job) and completions is not None:
            busy = {pod_index(pod, completions) for pod in active}
            todo = [
                index
                for index in range(completions)
                if index not in tracking.completed_indexes
                and index not in tracking.failed_indexes
                and index not in busy
            ]
            for index in todo[:room]:
                await self._create_pod(
                    job,
                    build_pod(
                        job,
                        index,
                        tracking.index_failures.get(index, 0),
                        tracking.index_ignored.get(index, 0),
                    ),
                )
            return
        if completions is None:
            wanted = 0 if tracking.succeeded else parallelism
        else:
            wanted = min(parallelism, completions - tracking.succeeded)
        for _ in range(max(0, wanted - len(active))):
            await self._create_pod(job, build_pod(job, None))

    async def _create_pod(self, job: JsonObject, pod: JsonObject) -> None:
        namespace = job["metadata"].get("namespace", "default")
        try:
            created = await self.api.create(f"/api/v1/namespaces/{namespace}/pods", pod)
        except ApiError as error:
            await self._event(
                job, "Warning", cond.Outcome(False, "FailedCreate", f"Error creating: {error}")
            )
            raise
        self.pods.remember(created)
        await self._event(
            job,
            "Normal",
            cond.Outcome(True, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}"),
        )

    async def _delete_pods(self, job: JsonObject, pods: list[JsonObject]) -> None:
        for pod in pods:
            if _deleting(pod) or _terminal(pod):
                continue
            meta = pod["metadata"]
            path = object_path("v1", "pods", meta.get("namespace"), meta["name"])
            result = await self.api.delete(path, preconditions_uid=meta.get("uid"))
            if result and result.get("kind") == "Pod":
                self.pods.remember(result)
            await self._event(
                job,
                "Normal",
                cond.Outcome(True, "SuccessfulDelete", f"Deleted pod: {meta['name']}"),
            )

    async def _write_status(
        self,
        job: JsonObject,
        pods: list[JsonObject],
        tracking: JobTracking,
        conditions: list[JsonObject],
        status: JsonObject,
    ) -> None:
        spec = job.get("spec") or {}
        running = [pod for pod in pods if not _terminal(pod)]
        new_status: JsonObject = {
            key: value
            for key, value in status.items()
            if key not in ("active", "ready", "terminating", "succeeded", "failed")
        }
        new_status.update(
            {
                "conditions": conditions or None,
                "active": sum(1 for pod in running if not _deleting(pod)) or None,
                "terminating": sum(1 for pod in running if _deleting(pod)) or None,
                "ready": sum(1 for pod in running if _ready(pod) and not _deleting(pod)),
                "succeeded": tracking.succeeded or None,
                "failed": tracking.failed or None,
            }
        )
        if is_indexed(job):
            new_status["completedIndexes"] = format_indexes(tracking.completed_indexes) or None
        if spec.get("backoffLimitPerIndex") is not None:
            new_status["failedIndexes"] = format_indexes(tracking.failed_indexes)
        compact = {k: v for k, v in new_status.items() if v is not None}
        old = job.get("status") or {}
        if compact == old:
            return
        patch_body = dict(compact)
        for removed in set(old) - set(compact):
            patch_body[removed] = None
        meta = job["metadata"]
        path = object_path("batch/v1", "jobs", meta.get("namespace"), meta["name"]) + "/status"
        updated = await self.api.merge_patch(path, {"status": patch_body})
        self.jobs.remember(updated)

    async def _release_counted(
        self, pods: list[JsonObject], tracking: JobTracking, everything_ended: bool
    ) -> None:
        """Drop the tracking finalizer of pods whose end is in the Job's status now (of every
        ended pod once the Job has finished: nothing more is counted then)."""
        for pod in pods:
            counted = str(pod["metadata"]["uid"]) in tracking.counted
            if counted or (everything_ended and _terminal(pod)):
                await self._remove_finalizer(pod)

    async def _remove_finalizer(self, pod: JsonObject) -> None:
        meta = pod["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if TRACKING_FINALIZER not in finalizers:
            return
        finalizers.remove(TRACKING_FINALIZER)
        path = object_path("v1", "pods", meta.get("namespace"), meta["name"])
        patch = {
            "metadata": {
                "finalizers": finalizers or None,
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        try:
            updated = await self.api.merge_patch(path, patch)
        except ApiError as error:
            if error.status == 404:
                return
            raise
        if updated.get("kind") == "Pod" and not (
            updated["metadata"].get("deletionTimestamp") and not finalizers
        ):
            self.pods.remember(updated)

    async def _release_orphans(self, namespace: str, name: str, live_uid: str | None) -> None:
        """Kubernetes' orphan handling: a pod labelled for Job ``name`` that the live Job
        (``live_uid``; None when it is gone or being deleted) does not control loses the
        tracking finalizer. It is not stopped: garbage collection decides that (a Job deleted
        with propagationPolicy Orphan leaves its pods running, as on a cluster)."""
        for (ns, _), pod in list(self.pods.cache.items()):
            if ns != namespace or (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) != name:
                continue
            if live_uid is not None and controller_uid(pod) == live_uid:
                continue
            await self._remove_finalizer(pod)

    async def _after_finish(
        self, job: JsonObject, pods: list[JsonObject], conditions: list[JsonObject]
    ) -> None:
        # A finished Job keeps no running pods (e.g. one created just before it finished).
        await self._delete_pods(job, [pod for pod in pods if not _terminal(pod)])
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        final = cond.get_condition(conditions, cond.COMPLETE) or cond.get_condition(
            conditions, cond.FAILED
        )
        finished_at = parse_time((final or {}).get("lastTransitionTime"))
        if finished_at is None:
            return
        remaining = float(ttl) - (seconds_since((final or {}).get("lastTransitionTime")) or 0.0)
        if remaining > 0:
            self.enqueue_after(object_key(job), remaining + 0.05)
            return
        meta = job["metadata"]
        await self.api.delete(
            object_path("batch/v1", "jobs", meta.get("namespace"), meta["name"]),
            propagation_policy="Foreground",
            preconditions_uid=meta.get("uid"),
        )

    async def _event(self, job: JsonObject, kind: str, outcome: cond.Outcome) -> None:
        involved = {"apiVersion": "batch/v1", "kind": "Job", "metadata": job["metadata"]}
        await record_event(
            self.api, involved, kind, outcome.reason, outcome.message, "job-controller"
        )


def _restarts(job: JsonObject, pods: list[JsonObject]) -> int:
    """With restartPolicy OnFailure, container restarts in running pods count as retries."""
    template_spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    if template_spec.get("restartPolicy") != "OnFailure":
        return 0
    return sum(
        int(cs.get("restartCount") or 0)
        for pod in pods
        if not _terminal(pod)
        for cs in (pod.get("status") or {}).get("containerStatuses") or []
    )


def _completions(spec: JsonObject) -> int | None:
    completions = spec.get("completions")
    if completions is None and spec.get("parallelism") is None:
        return 1  # the API server's default when neither is given
    return int(completions) if completions is not None else None
