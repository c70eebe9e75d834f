"""The progress object a shard publishes: ``<output>/progress/shard-<i>.json`` (camelCase).

The operator sums these into the BatchJob status (progress, throughput, ETA)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from llmbatch.runner.parts import Tally

State = Literal["running", "done", "expired", "cancelled", "failed"]


def rfc3339(ts: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ProgressTracker:
    shard: int
    shard_count: int
    attempt: int
    started_at: float
    # Tokens already counted when this attempt began: throughput is this attempt's own rate.
    base_tokens: int = 0

    def snapshot(self, state: State, tally: Tally, total: int | None) -> dict[str, Any]:
        now = time.time()
        tokens = tally.prompt_tokens + tally.completion_tokens - self.base_tokens
        elapsed = max(now - self.started_at, 1e-6)
        return {
            "shard": self.shard,
            "shardCount": self.shard_count,
            "state": state,
            "total": total,
            "completed": tally.completed,
            "failed": tally.failed,
            "promptTokens": tally.prompt_tokens,
            "completionTokens": tally.completion_tokens,
            "throughput": round(tokens / elapsed, 2),
            "startedAt": rfc3339(self.started_at),
            "updatedAt": rfc3339(now),
            "attempt": self.attempt,
        }
