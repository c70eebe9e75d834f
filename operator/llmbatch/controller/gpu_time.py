"""GPU-seconds of a batch: the running time of its shard pods times the GPUs each holds.

Pods come and go (a shard removed by the scaling policy is deleted with its Job; a retried
shard gets a new pod), so the total is not recomputed from the pods alive now: each pass adds
the part of every observed pod's running span that falls after the time the total was last
brought up to date (``status.gpuSecondsAt``), and moves that time to now. A pod that ended and
disappeared between two passes loses at most the few seconds since the last pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from llmbatch.controller.jobview import PodSpan


def seconds_since(spans: Iterable[PodSpan], since: datetime | None, now: datetime) -> float:
    """The running seconds of ``spans`` that fall in (since, now]."""
    total = 0.0
    for span in spans:
        start = span.start if since is None else max(span.start, since)
        end = min(span.end or now, now)
        total += max(0.0, (end - start).total_seconds())
    return total


def cost_usd(gpu_seconds: float, gpu_hour_usd: float | None) -> float | None:
    if gpu_hour_usd is None:
        return None
    return round(gpu_seconds / 3600 * gpu_hour_usd, 4)
