"""Aggregate the shards' progress objects (``<output>/progress/shard-<i>.json``).

Pure: the objects are read by the I/O layer; here they become requestCounts, usage, the
``done/total`` string, throughput and an ETA.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from llmbatch.controller.timefmt import parse_time


@dataclass(frozen=True)
class Aggregate:
    shards_reporting: int
    total: int | None  # None until every shard has counted its lines
    completed: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    throughput: float  # tokens/s over the shards that are running
    eta: datetime | None
    states: Mapping[int, str]
    # shard -> (completed, failed)
    per_shard: Mapping[int, tuple[int, int]]

    @property
    def done(self) -> int:
        return self.completed + self.failed


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def aggregate(
    objects: Sequence[Mapping[str, Any]],
    shard_count: int,
    now: datetime,
    estimated_total: int | None = None,
) -> Aggregate:
    """Sum the latest object of each shard. The ETA is the remaining requests over the batch's
    overall rate (done requests / time since the first shard started), which stays honest
    across restarts where a shard's own counters resume from a checkpoint. Until every shard
    has counted its lines, ``estimated_total`` (from the input's size) stands in for the ETA
    only; ``total`` stays unknown."""
    latest: dict[int, Mapping[str, Any]] = {}
    for obj in objects:
        try:
            shard = int(obj.get("shard", -1))
        except (TypeError, ValueError):
            continue
        if not 0 <= shard < shard_count:
            continue
        previous = latest.get(shard)
        if previous is None or str(obj.get("updatedAt") or "") >= str(
            previous.get("updatedAt") or ""
        ):
            latest[shard] = obj
    completed = sum(_int(o.get("completed")) for o in latest.values())
    failed = sum(_int(o.get("failed")) for o in latest.values())
    totals = [o.get("total") for o in latest.values()]
    total: int | None = None
    if len(latest) == shard_count and all(isinstance(t, int) for t in totals):
        total = sum(_int(t) for t in totals)
    throughput = 0.0
    for obj in latest.values():
        if obj.get("state") == "running":
            with contextlib.suppress(TypeError, ValueError):
                throughput += max(0.0, float(obj.get("throughput") or 0.0))
    starts = [t for t in (parse_time(o.get("startedAt")) for o in latest.values()) if t]
    eta: datetime | None = None
    done = completed + failed
    eta_total = total if total is not None else estimated_total
    if eta_total is not None and eta_total < done:
        eta_total = None  # the estimate is off; better no ETA than a wrong one
    if eta_total is not None and starts:
        remaining = max(0, eta_total - done)
        elapsed = (now - min(starts)).total_seconds()
        if remaining == 0:
            eta = now
        elif done > 0 and elapsed > 0:
            eta = now + timedelta(seconds=remaining / (done / elapsed))
    return Aggregate(
        shards_reporting=len(latest),
        total=total,
        completed=completed,
        failed=failed,
        prompt_tokens=sum(_int(o.get("promptTokens")) for o in latest.values()),
        completion_tokens=sum(_int(o.get("completionTokens")) for o in latest.values()),
        throughput=round(throughput, 1),
        eta=eta,
        states={shard: str(o.get("state") or "") for shard, o in latest.items()},
        per_shard={
            shard: (_int(o.get("completed")), _int(o.get("failed"))) for shard, o in latest.items()
        },
    )
