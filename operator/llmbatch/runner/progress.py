"""The progress document a shard publishes at ``<output>/progress/shard-<i>.json``
(``llmbatch.api.documents.ShardProgress``).

The operator sums these into the BatchJob status (progress, throughput, ETA)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from llmbatch.api.documents import ShardProgress, ShardState
from llmbatch.api.timefmt import rfc3339
from llmbatch.runner.parts import Tally
from llmbatch.storage import ObjectStore


@dataclass
class ProgressTracker:
    shard: int
    shard_count: int
    attempt: int
    started_at: float
    # Tokens already counted when this attempt began: throughput is this attempt's own rate.
    base_tokens: int = 0

    def snapshot(self, state: ShardState, tally: Tally, total: int | None) -> ShardProgress:
        now = time.time()
        tokens = tally.prompt_tokens + tally.completion_tokens - self.base_tokens
        elapsed = max(now - self.started_at, 1e-6)
        return ShardProgress(
            shard=self.shard,
            shard_count=self.shard_count,
            state=state,
            total=total,
            completed=tally.completed,
            failed=tally.failed,
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            throughput=round(tokens / elapsed, 2),
            started_at=rfc3339(self.started_at),
            updated_at=rfc3339(now),
            attempt=self.attempt,
        )


def previous_progress(store: ObjectStore, uri: str) -> ShardProgress | None:
    """The shard's last published progress (an earlier attempt's), if readable."""
    found = store.read_versioned(uri)
    if found is None:
        return None
    try:
        return ShardProgress.model_validate_json(found.data)
    except ValueError:
        return None
