"""What the operator reads from object storage: object metadata, the shards' small progress
documents, the plan's summary and the manifest. Never the input or the output files
themselves: data moves in pods.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.api.documents import Manifest, ShardProgress
from llmbatch.api.layout import OutputLayout, document_shard
from llmbatch.api.plan import PlanSummary
from llmbatch.controller.config import OperatorConfig
from llmbatch.storage import ObjectInfo, StorageError, StorageSettings, get_store

logger = logging.getLogger(__name__)
# Progress documents are a few hundred bytes; anything far larger is not one.
MAX_PROGRESS_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# plan.json lists its segments: a few hundred bytes each, even for tens of millions of lines.
MAX_PLAN_BYTES = 16 * 1024 * 1024
# Head of the input read to estimate its line count (for an early ETA).
SAMPLE_BYTES = 64 * 1024


def secret_credentials(secret: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    data = (secret or {}).get("data") or {}
    string_data = (secret or {}).get("stringData") or {}

    def value(key: str) -> str | None:
        if key in data:
            return base64.b64decode(data[key]).decode()
        return string_data.get(key)

    return value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY")


def storage_settings(
    spec: BatchJobSpec, config: OperatorConfig, secret: Mapping[str, Any] | None
) -> StorageSettings:
    """The same endpoint and credentials the pods get, with short timeouts: the operator must
    not block on a slow S3 for long."""
    access_key, secret_key = secret_credentials(secret)
    return StorageSettings(
        endpoint_url=spec.storage.endpoint or config.default_s3_endpoint,
        region=spec.storage.region or config.default_s3_region,
        access_key_id=access_key,
        secret_access_key=secret_key,
        max_attempts=3,
        stream_attempts=2,
        connect_timeout=5.0,
        read_timeout=15.0,
        # The operator reads small things; a 1 MiB read buffer would over-read the sample.
        read_chunk_size=SAMPLE_BYTES,
    )


@dataclass
class ProgressReader:
    """Re-reads a shard's progress document only when its ETag changed since the last look."""

    cache: dict[str, tuple[str | None, ShardProgress]] = field(default_factory=dict)

    def read(self, output: str, settings: StorageSettings) -> list[ShardProgress]:
        prefix = OutputLayout(output).progress_dir
        store = get_store(prefix, settings)
        seen: set[str] = set()
        results: list[ShardProgress] = []
        infos: list[ObjectInfo] = list(store.list(prefix))
        for info in infos:
            if document_shard(info.uri) is None:
                continue
            seen.add(info.uri)
            cached = self.cache.get(info.uri)
            if cached is not None and cached[0] is not None and cached[0] == info.etag:
                results.append(cached[1])
                continue
            if info.size > MAX_PROGRESS_BYTES:
                continue
            try:
                parsed = ShardProgress.model_validate_json(store.read_bytes(info.uri))
            except (StorageError, ValueError) as exc:
                logger.debug("progress document %s unreadable: %s", info.uri, exc)
                continue
            self.cache[info.uri] = (info.etag, parsed)
            results.append(parsed)
        for gone in set(self.cache) - seen:
            del self.cache[gone]
        return results


def read_manifest(output: str, settings: StorageSettings) -> Manifest | None:
    """None while finalize has not written it; a manifest that does not parse raises (the
    pass is retried rather than finishing the batch without its exact counts)."""
    uri = OutputLayout(output).manifest
    store = get_store(uri, settings)
    info = store.head(uri)
    if info is None or info.size > MAX_MANIFEST_BYTES:
        return None
    return Manifest.model_validate_json(store.read_bytes(uri))


def read_plan(output: str, settings: StorageSettings) -> PlanSummary | None:
    """The plan's summary; None until the plan step wrote it (it writes plan.json last). One
    that does not parse raises: the pass is retried, no shard starts on a plan it cannot read."""
    uri = OutputLayout(output).plan_summary
    store = get_store(uri, settings)
    info = store.head(uri)
    if info is None:
        return None
    if info.size > MAX_PLAN_BYTES:
        raise StorageError(f"{uri} is {info.size} bytes, over {MAX_PLAN_BYTES}: not a plan")
    return PlanSummary.model_validate_json(store.read_bytes(uri))


def estimate_lines(uri: str, settings: StorageSettings) -> int | None:
    """The input's line count, estimated from its size and the average length of the lines
    in its first 64 KiB (exact for smaller objects). Only the sample is read."""
    store = get_store(uri, settings)
    info = store.head(uri)
    if info is None or info.size == 0:
        return None
    with contextlib.closing(store.open_read(uri)) as reader:
        sample = reader.read(SAMPLE_BYTES)
    if len(sample) >= info.size:
        return sum(1 for line in sample.split(b"\n") if line.strip())
    complete = sample[: sample.rfind(b"\n") + 1]
    lines = sum(1 for line in complete.split(b"\n") if line.strip())
    if lines == 0:
        return None
    return max(lines, round(info.size * lines / len(complete)))
