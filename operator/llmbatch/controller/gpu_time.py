"""GPU-seconds of a batch: the running time of its pods times the GPUs each holds (its own
limit, so a KubeRay head and workers count what they were given, not spec.resources.gpu).

Pods come and go (a shard removed by the scaling policy is deleted with its Job; a retried
shard gets a new pod), so the total is not recomputed from the pods alive now: each pass adds
the part of every observed pod's running span that falls after the time the total was last
brought up to date (``status.gpuSecondsAt``), and moves that time to now. A pod that ended and
disappeared between two passes loses at most the few seconds since the last pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from llmbatch.api.batchjob import ResourcesSpec
from llmbatch.controller.jobview import PodSpan


def _seconds_in(span: PodSpan, since: datetime | None, now: datetime) -> float:
    start = span.start if since is None else max(span.start, since)
    end = min(span.end or now, now)
    return max(0.0, (end - start).total_seconds())


def seconds_since(spans: Iterable[PodSpan], since: datetime | None, now: datetime) -> float:
    """The running seconds of ``spans`` that fall in (since, now]."""
    return sum(_seconds_in(span, since, now) for span in spans)


def gpu_seconds_since(
    spans: Iterable[PodSpan],
    since: datetime | None,
    now: datetime,
    resources_of: Callable[[PodSpan], ResourcesSpec],
) -> float:
    """The GPU-seconds of ``spans`` in (since, now]: each pod's running time times the GPUs it
    holds (``span_gpus``, with ``resources_of`` the spec's resources for the pod's role)."""
    return sum(
        _seconds_in(span, since, now) * span_gpus(span, resources_of(span)) for span in spans
    )


def span_gpus(span: PodSpan, resources: ResourcesSpec) -> int:
    """The GPUs the pod held: its own limit of the role's GPU resource (none when its limits
    lack it), or, when the pod does not list its container, the role's ``resources.gpu``. The
    pod comes first: one made before an edit of the spec holds what it was given."""
    if span.limits is None:
        return resources.gpu
    value = dict(span.limits).get(resources.gpu_resource_name)
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:  # extended resources are whole numbers; anything else: the spec's
        return resources.gpu


def cost_usd(gpu_seconds: float, gpu_hour_usd: float | None) -> float | None:
    if gpu_hour_usd is None:
        return None
    return round(gpu_seconds / 3600 * gpu_hour_usd, 4)
