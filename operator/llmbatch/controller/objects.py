"""What the operator reads from object storage: object metadata, the shards' small progress
objects and the manifest. Never the input or the output files themselves: data moves in pods.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.controller.config import OperatorConfig
from llmbatch.storage import ObjectInfo, StorageError, StorageSettings, get_store, join_uri

logger = logging.getLogger(__name__)
# Progress objects are a few hundred bytes; anything far larger is not one.
MAX_PROGRESS_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
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
    """Re-reads a shard's progress object only when its ETag changed since the last look."""

    cache: dict[str, tuple[str | None, dict[str, Any]]] = field(default_factory=dict)

    def read(self, output: str, settings: StorageSettings) -> list[dict[str, Any]]:
        prefix = join_uri(output, "progress") + "/"
        store = get_store(prefix, settings)
        seen: set[str] = set()
        results: list[dict[str, Any]] = []
        infos: list[ObjectInfo] = list(store.list(prefix))
        for info in infos:
            name = info.uri.rsplit("/", 1)[-1]
            if not (name.startswith("shard-") and name.endswith(".json")):
                continue
            seen.add(info.uri)
            cached = self.cache.get(info.uri)
            if cached is not None and cached[0] is not None and cached[0] == info.etag:
                results.append(cached[1])
                continue
            if info.size > MAX_PROGRESS_BYTES:
                continue
            try:
                parsed = json.loads(store.read_bytes(info.uri))
            except (StorageError, ValueError) as exc:
                logger.debug("progress object %s unreadable: %s", info.uri, exc)
                continue
            if isinstance(parsed, dict):
                self.cache[info.uri] = (info.etag, parsed)
                results.append(parsed)
        for gone in set(self.cache) - seen:
            del self.cache[gone]
        return results


def read_manifest(output: str, settings: StorageSettings) -> dict[str, Any] | None:
    uri = join_uri(output, "manifest.json")
    store = get_store(uri, settings)
    info = store.head(uri)
    if info is None or info.size > MAX_MANIFEST_BYTES:
        return None
    parsed = json.loads(store.read_bytes(uri))
    return parsed if isinstance(parsed, dict) else None


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
