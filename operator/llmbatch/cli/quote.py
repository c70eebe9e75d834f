"""What ``llmbatch estimate`` quotes beyond token counts: expected GPU-seconds and wall time
from a recorded throughput, and the cost at given prices next to OpenAI's batch price.

Throughput is tokens (prompt + completion) per second per shard, one shard being one engine
on the BatchJob's GPUs: read from the manifests of earlier runs (their usage over the time
from the run's start to its end, engine start included, per shard), or given with ``--rate``.
Manifests do not record the device, so rates are only comparable across runs on the same
kind of node; the quote says which runs it used. Completion tokens are an upper bound
(max_tokens, or the assumed budget), so time and cost are too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# OpenAI Batch API prices, US dollars per million tokens (input, output): half the standard
# price, from https://openai.com/api/pricing as of this date. Override with
# --openai-price-input/--openai-price-output when they change.
OPENAI_BATCH_PRICES_DATE = "2025-06-01"
OPENAI_BATCH_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.075, 0.30),
    "gpt-4o": (1.25, 5.00),
    "gpt-4.1-nano": (0.05, 0.20),
    "gpt-4.1-mini": (0.20, 0.80),
    "gpt-4.1": (1.00, 4.00),
}
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


class QuoteError(Exception):
    """A manifest that gives no throughput; the message says which and why."""


@dataclass(frozen=True)
class Rate:
    tokens_per_second: float  # per shard
    source: str  # "--rate", or the manifests it was read from


def rate_from_manifests(uris: Sequence[str]) -> Rate:
    """Tokens per second per shard over the given runs' manifests (a manifest.json, or the
    output folder holding one): all their tokens over all their shard-seconds."""
    from llmbatch.api.documents import Manifest
    from llmbatch.api.layout import MANIFEST_FILE
    from llmbatch.api.timefmt import parse_time
    from llmbatch.storage import StorageError, get_store, join_uri

    tokens, shard_seconds, models = 0, 0.0, set()
    for uri in uris:
        target = uri if uri.endswith(".json") else join_uri(uri, MANIFEST_FILE)
        try:
            manifest = Manifest.model_validate_json(get_store(target).read_bytes(target))
        except (StorageError, OSError, ValueError) as exc:
            raise QuoteError(f"{target}: no readable manifest: {exc}") from exc
        start = parse_time(manifest.timing.started_at)
        end = parse_time(manifest.timing.run_finished_at)
        if start is None or end is None or end <= start:
            raise QuoteError(f"{target}: the manifest records no run time")
        tokens += manifest.usage.prompt_tokens + manifest.usage.completion_tokens
        shard_seconds += (end - start).total_seconds() * manifest.shard_count
        models.add(manifest.model.name if manifest.model else None)
    if tokens == 0:
        raise QuoteError("the manifests record no tokens")
    names = ", ".join(sorted(str(m) for m in models))
    return Rate(tokens / shard_seconds, f"{len(uris)} manifest(s) of model {names}")


def token_cost(prompt: int, completion: int, prices: tuple[float, float]) -> float:
    return (prompt * prices[0] + completion * prices[1]) / 1_000_000


def quote(
    prompt: int,
    completion: int,
    rate: Rate | None,
    parallelism: int,
    prices: tuple[float, float] | None,
    openai: tuple[str, tuple[float, float]],
) -> dict[str, Any]:
    """The quote as a JSON-ready dict (camelCase, like the rest of ``-o json``)."""
    result: dict[str, Any] = {"parallelism": parallelism}
    if rate is not None:
        gpu_seconds = (prompt + completion) / rate.tokens_per_second
        result.update(
            tokensPerSecondPerShard=round(rate.tokens_per_second, 3),
            rateFrom=rate.source,
            gpuSecondsUpperBound=round(gpu_seconds, 1),
            wallSecondsUpperBound=round(gpu_seconds / parallelism, 1),
        )
    if prices is not None:
        result.update(
            priceInputPerMillion=prices[0],
            priceOutputPerMillion=prices[1],
            costUpperBound=token_cost(prompt, completion, prices),
        )
    model, openai_prices = openai
    result["openaiBatch"] = {
        "model": model,
        "priceInputPerMillion": openai_prices[0],
        "priceOutputPerMillion": openai_prices[1],
        "pricesAsOf": OPENAI_BATCH_PRICES_DATE,
        "costUpperBound": token_cost(prompt, completion, openai_prices),
    }
    return result
