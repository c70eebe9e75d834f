"""Sum the shards' progress documents (``<output>/progress/shard-<i>.json``).

Pure: the documents are read by the I/O layer; here they become the batch's counters, token
usage, throughput and an ETA.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from llmbatch.api.documents import ShardProgress
from llmbatch.api.timefmt import parse_time


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


# What the status shows before any shard reported (the plan's totals may already be known).
NOTHING_YET = Aggregate(
    shards_reporting=0,
    total=None,
    completed=0,
    failed=0,
    prompt_tokens=0,
    completion_tokens=0,
    throughput=0.0,
    eta=None,
    states={},
    per_shard={},
)


def latest_per_shard(
    documents: Sequence[ShardProgress], shard_count: int
) -> dict[int, ShardProgress]:
    """The newest document of each shard of this batch (others are ignored)."""
    latest: dict[int, ShardProgress] = {}
    for doc in documents:
        if doc.shard >= shard_count:
            continue
        previous = latest.get(doc.shard)
        if previous is None or (doc.updated_at or "") >= (previous.updated_at or ""):
            latest[doc.shard] = doc
    return latest


def estimate_eta(
    latest: Mapping[int, ShardProgress],
    eta_total: int | None,
    now: datetime,
    exact: bool = False,
) -> datetime | None:
    """The remaining requests over the batch's overall rate (done requests / time since the
    first shard started), which stays honest across restarts where a shard's own counters
    resume from a checkpoint. An ``exact`` total (the plan's) is trusted even when the shards
    briefly count more (a chunk recomputed after a kill)."""
    done = sum(d.completed + d.failed for d in latest.values())
    if eta_total is not None and eta_total < done and not exact:
        return None  # the estimate is off; better no ETA than a wrong one
    starts = [t for t in (parse_time(d.started_at) for d in latest.values()) if t]
    if eta_total is None or not starts:
        return None
    remaining = max(0, eta_total - done)
    elapsed = (now - min(starts)).total_seconds()
    if remaining == 0:
        return now
    if done > 0 and elapsed > 0:
        return now + timedelta(seconds=remaining / (done / elapsed))
    return None


def aggregate(
    documents: Sequence[ShardProgress],
    shard_count: int,
    now: datetime,
    estimated_total: int | None = None,
    planned: int | None = None,
) -> Aggregate:
    """Sum the latest document of each shard. With a plan, ``planned`` (its runnable lines)
    is the shards' total: they claim chunks, so no shard has a share of its own to count.
    Without one, the total is known once every shard has counted its lines; until then
    ``estimated_total`` (from the input's size) stands in for the ETA only."""
    latest = latest_per_shard(documents, shard_count)
    totals = [d.total for d in latest.values()]
    total: int | None = planned
    if planned is None and len(latest) == shard_count and all(t is not None for t in totals):
        total = sum(t or 0 for t in totals)
    running = (d.throughput for d in latest.values() if d.state == "running")
    return Aggregate(
        shards_reporting=len(latest),
        total=total,
        completed=sum(d.completed for d in latest.values()),
        failed=sum(d.failed for d in latest.values()),
        prompt_tokens=sum(d.prompt_tokens for d in latest.values()),
        completion_tokens=sum(d.completion_tokens for d in latest.values()),
        throughput=round(sum(running, 0.0), 1),
        eta=estimate_eta(
            latest, total if total is not None else estimated_total, now, planned is not None
        ),
        states={shard: d.state for shard, d in latest.items()},
        per_shard={shard: (d.completed, d.failed) for shard, d in latest.items()},
    )
