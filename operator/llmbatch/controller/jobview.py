"""What a batch/v1 Job and its pods say, read the way the Job controller writes them.

The ``JobView`` is also what the policies read of a KubeRay RayJob (``kuberay.py`` reads one
into it), so cancel, suspend, deadline, failure and finalize are one implementation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.timefmt import parse_time

RUNNER_CONTAINER = "runner"


def parse_indexes(text: str | None) -> set[int]:
    """``"0,2-4"`` (status.completedIndexes / failedIndexes) as a set of ints."""
    result: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            result.update(range(int(low), int(high) + 1))
        else:
            result.add(int(part))
    return result


def _condition(job: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == ctype and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return None


def pod_index(pod: Mapping[str, Any]) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("labels") or {}).get("batch.kubernetes.io/job-completion-index") or (
        meta.get("annotations") or {}
    ).get("batch.kubernetes.io/job-completion-index")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def pod_exit_code(pod: Mapping[str, Any]) -> int | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if len(statuses) > 1 and status.get("name") != RUNNER_CONTAINER:
            continue
        terminated = (status.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode") is not None:
            return int(terminated["exitCode"])
    return None


def pod_termination_message(pod: Mapping[str, Any]) -> str:
    """What the runner container left in its termination message (with
    ``FallbackToLogsOnError``, the tail of its log); empty when it left nothing."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != RUNNER_CONTAINER:
            continue
        terminated = (status.get("state") or {}).get("terminated") or {}
        return str(terminated.get("message") or "").strip()
    return ""


@dataclass(frozen=True)
class PodSpan:
    """When a pod's container ran, which container it was (its role) and the resource limits
    it held, for GPU-seconds."""

    start: datetime
    # None while the container runs.
    end: datetime | None = None
    container: str = RUNNER_CONTAINER
    # The container's resources.limits as the pod says them; None when the pod does not list
    # the container (then the spec's value for its role counts).
    limits: tuple[tuple[str, str], ...] | None = None


def _container_limits(pod: Mapping[str, Any], container: str) -> tuple[tuple[str, str], ...] | None:
    for item in (pod.get("spec") or {}).get("containers") or []:
        if item.get("name") == container:
            limits = (item.get("resources") or {}).get("limits") or {}
            return tuple(sorted((str(k), str(v)) for k, v in limits.items()))
    return None


def pod_span(pod: Mapping[str, Any], container: str = RUNNER_CONTAINER) -> PodSpan | None:
    """When the pod's ``container`` started and (if it has) finished; None before it ran."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != container:
            continue
        state = status.get("state") or {}
        running, terminated = state.get("running"), state.get("terminated")
        limits = _container_limits(pod, container)
        if running:
            start = parse_time(running.get("startedAt"))
            return PodSpan(start, None, container, limits) if start else None
        if terminated:
            start = parse_time(terminated.get("startedAt"))
            end = parse_time(terminated.get("finishedAt"))
            # A container that never started reports the epoch (or nothing) as its start.
            if start is None or end is None or start.year < 2000:
                return None
            return PodSpan(start, end, container, limits)
    return None


def pod_is_live(pod: Mapping[str, Any]) -> bool:
    """Pending or Running, terminating included: it may still be writing its part."""
    return (pod.get("status") or {}).get("phase") in ("Pending", "Running", None, "Unknown")


def pod_is_running(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and not (
        pod.get("metadata") or {}
    ).get("deletionTimestamp")


@dataclass(frozen=True)
class JobView:
    exists: bool = False
    suspended: bool = False
    complete: bool = False
    failed: bool = False
    failed_reason: str = ""
    failed_message: str = ""
    active: int = 0
    live_pods: int = 0
    running_pods: int = 0
    completed_indexes: frozenset[int] = frozenset()
    failed_indexes: frozenset[int] = frozenset()
    exit_codes: frozenset[int] = frozenset()
    # index -> failed pod count (retries spent)
    restarts: Mapping[int, int] = field(default_factory=dict)
    running_indexes: frozenset[int] = frozenset()
    # Why a pending shard pod is not scheduled (e.g. no free GPU), from its PodScheduled
    # condition; empty when nothing says so.
    unschedulable: str = ""
    # The last words of a failed pod (its termination message), for the status message.
    termination_message: str = ""
    # When each listed pod's runner container ran (for GPU-seconds).
    pod_spans: tuple[PodSpan, ...] = ()
    # What the child's own controller says it is doing, when it says more than conditions do
    # (a RayJob's jobDeploymentStatus and Ray job status); empty for a batch/v1 Job.
    state: str = ""

    @property
    def finished(self) -> bool:
        return self.complete or self.failed

    @property
    def has_live_pods(self) -> bool:
        return self.active > 0 or self.live_pods > 0

    @property
    def permanent_error(self) -> bool:
        return int(ExitCode.PERMANENT) in self.exit_codes

    @property
    def expired_signal(self) -> bool:
        return int(ExitCode.EXPIRED) in self.exit_codes or self.failed_reason == "DeadlineExceeded"


@dataclass(frozen=True)
class PodFacts:
    """What a child's pods say, whoever created them (the Job controller, or KubeRay)."""

    live: int = 0
    running: int = 0
    running_indexes: frozenset[int] = frozenset()
    exit_codes: frozenset[int] = frozenset()
    restarts: Mapping[int, int] = field(default_factory=dict)
    unschedulable: str = ""
    last_words: str = ""
    spans: tuple[PodSpan, ...] = ()


def pod_facts(
    pods: Sequence[Mapping[str, Any]], containers: Sequence[str] = (RUNNER_CONTAINER,)
) -> PodFacts:
    """Live and running pods, why one is not scheduled, failed pods' exit codes and last words
    (per completion index), and when each pod's container (the first of ``containers`` it
    has) ran."""
    exit_codes: set[int] = set()
    restarts: dict[int, int] = {}
    running: set[int] = set()
    live = 0
    running_pods = 0
    unschedulable = ""
    last_words = ""
    for pod in pods:
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                unschedulable = unschedulable or str(condition.get("message") or "")[:200]
        index = pod_index(pod)
        if pod_is_live(pod):
            live += 1
        if pod_is_running(pod):
            running_pods += 1
            if index is not None:
                running.add(index)
        if (pod.get("status") or {}).get("phase") == "Failed":
            code = pod_exit_code(pod)
            if code is not None:
                exit_codes.add(code)
            last_words = pod_termination_message(pod) or last_words
            if index is not None:
                restarts[index] = restarts.get(index, 0) + 1
    spans = (
        next((span for c in containers if (span := pod_span(pod, c)) is not None), None)
        for pod in pods
    )
    return PodFacts(
        live=live,
        running=running_pods,
        running_indexes=frozenset(running),
        exit_codes=frozenset(exit_codes),
        restarts=restarts,
        unschedulable=unschedulable,
        last_words=last_words,
        spans=tuple(span for span in spans if span is not None),
    )


def view_job(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = ()) -> JobView:
    if not job:
        return JobView()
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    failed = _condition(job, "Failed")
    facts = pod_facts(pods)
    return JobView(
        exists=True,
        suspended=bool(spec.get("suspend")),
        complete=_condition(job, "Complete") is not None,
        failed=failed is not None,
        failed_reason=str((failed or {}).get("reason") or ""),
        failed_message=str((failed or {}).get("message") or ""),
        active=int(status.get("active") or 0),
        live_pods=facts.live,
        running_pods=facts.running,
        completed_indexes=frozenset(parse_indexes(status.get("completedIndexes"))),
        failed_indexes=frozenset(parse_indexes(status.get("failedIndexes"))),
        exit_codes=facts.exit_codes,
        restarts=facts.restarts,
        running_indexes=facts.running_indexes,
        unschedulable=facts.unschedulable,
        termination_message=facts.last_words,
        pod_spans=facts.spans,
    )
