"""The per-shard rate the scaling policy steers by, measured from the shards' progress documents.

Each shard publishes its counters every few seconds. The daemon of a BatchJob keeps, per shard,
the (time, requests done) pairs of the recent window and turns them into requests/s; the
per-shard rate is the mean over the shards that are producing. A shard that has not answered a
request since it started (loading its model) is left out: counting its zero would make every
freshly added shard look like a slowdown. A shard whose document stopped moving (finished,
stopped, killed) drops out once its samples age out of the window. Kept in memory only: after
an operator restart the rate is measured again within one window, before any new decision.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmbatch.api.documents import ShardProgress
from llmbatch.api.timefmt import parse_time
from llmbatch.controller.policy.scaling import MIN_RATE_SPAN, RATE_WINDOW

# How far back the rate looks (LLMBATCH_SCALING_RATE_WINDOW_SECONDS sets it per operator).
DEFAULT_WINDOW_SECONDS = RATE_WINDOW.total_seconds()
# A shard's rate counts once its samples span at least this long.
MIN_SPAN_SECONDS = MIN_RATE_SPAN.total_seconds()


@dataclass
class _ShardSamples:
    attempt: int
    points: deque[tuple[float, int]] = field(default_factory=deque)
    # The shard has answered a request in this attempt since we first saw it.
    producing: bool = False


@dataclass
class RateWindow:
    window: float = DEFAULT_WINDOW_SECONDS
    min_span: float = MIN_SPAN_SECONDS
    shards: dict[int, _ShardSamples] = field(default_factory=dict)

    def observe(self, documents: Sequence[ShardProgress]) -> None:
        """Add the documents' (updated_at, done) to their shard's samples (a document already
        seen is ignored)."""
        for doc in documents:
            moment = parse_time(doc.updated_at)
            if moment is None:
                continue
            when, done = moment.timestamp(), doc.completed + doc.failed
            samples = self.shards.get(doc.shard)
            if samples is None or samples.attempt != doc.attempt or doc.state != "running":
                # A new attempt starts from its own counters: the old points say nothing.
                samples = self.shards[doc.shard] = _ShardSamples(doc.attempt)
                if doc.state != "running":
                    continue
            points = samples.points
            if points and when <= points[-1][0]:
                continue
            if points and done < points[-1][1]:
                points.clear()
            if points and done > points[-1][1] and not samples.producing:
                # The first answers: the time before the last idle sample was model loading.
                samples.producing = True
                anchor = points[-1]
                points.clear()
                points.append(anchor)
            points.append((when, done))
            while len(points) > 2 and when - points[1][0] >= self.window:
                points.popleft()

    def per_shard_rate(self, now: float) -> float | None:
        """Requests/s of one producing shard (the mean over them); None until one has been
        measured over at least ``min_span`` seconds."""
        rates = []
        for samples in self.shards.values():
            points = samples.points
            if not samples.producing or len(points) < 2 or now - points[-1][0] > self.window:
                continue
            (first_t, first_done), (last_t, last_done) = points[0], points[-1]
            if last_t - first_t >= self.min_span:
                rates.append((last_done - first_done) / (last_t - first_t))
        return sum(rates) / len(rates) if rates else None
