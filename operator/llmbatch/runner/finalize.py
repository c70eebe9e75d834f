"""``llmbatch-runner finalize``: every shard's parts into output.jsonl, errors.jsonl and
manifest.json.

Bounded memory whatever the batch size: the input is streamed to learn which lines exist (a
bitmap, one bit a line) and to hash it; the parts, each sorted by line number, are downloaded
to local disk and merged k-way, so both files come out in input line order and are hashed as
they stream to the store; a line met twice (an adopted part overlapping a recomputed one, a
zombie pod) is kept once. Lines no shard finished become batch_expired / batch_cancelled
errors when the batch ended that way, or fail finalize when it should have completed.

The manifest is written only if absent: once it exists, finalize answers with it and changes
nothing, so a re-run (a retried finalize Job) is harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from llmbatch.api.layout import OutputLayout, part_number
from llmbatch.api.lines import ErrorCode
from llmbatch.runner import records
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.parts import LineSet, Tally
from llmbatch.runner.progress import rfc3339
from llmbatch.runner.records import Record
from llmbatch.runner.version import RUNNER_VERSION, engine_version
from llmbatch.storage import (
    AccessDenied,
    BucketNotFound,
    ObjectStore,
    StorageSettings,
    get_store,
)
from llmbatch.storage.lines import iter_lines

log = logging.getLogger(__name__)

Reason = Literal["none", "expired", "cancelled"]
_REASON_CODES = {
    "expired": ErrorCode.BATCH_EXPIRED.value,
    "cancelled": ErrorCode.BATCH_CANCELLED.value,
}


@dataclass
class FinalizeConfig:
    input_uri: str
    output_uri: str
    shard_count: int | None = None
    reason: Reason = "none"
    batch_name: str = ""
    settings: StorageSettings | None = None

    def __post_init__(self) -> None:
        if not self.batch_name:
            self.batch_name = self.output_uri.rstrip("/")


class _HashingReader:
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self.inner.read(size)
        self.sha.update(data)
        return data


class _HashingWriter:
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.lines = 0

    def write_line(self, line: bytes) -> None:
        data = line + b"\n"
        self.inner.write(data)
        self.sha.update(data)
        self.lines += 1


def _scan_input(store: ObjectStore, uri: str) -> tuple[LineSet, int, str]:
    """Non-blank line numbers, the number of lines, and the input's sha256."""
    expected = LineSet()
    lines = 0
    try:
        reader = _HashingReader(store.open_read(uri))
    except (BucketNotFound, AccessDenied) as exc:
        raise PermanentError(f"input {uri} cannot be read: {exc}") from exc
    with contextlib.closing(reader.inner):
        for lineno, raw in enumerate(iter_lines(reader, store.read_chunk_size), start=1):
            lines = lineno
            if raw.strip():
                expected.add(lineno)
    return expected, lines, reader.sha.hexdigest()


def _part_uris(store: ObjectStore, layout: OutputLayout) -> Iterator[str]:
    # Key order: by shard, then part number (zero-padded), the order each shard produced
    # them in; each part is itself sorted by line number.
    for info in store.list(layout.parts_dir):
        if part_number(info.uri) is not None:
            yield info.uri


def _read_json_objects(store: ObjectStore, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for info in store.list(prefix):
        if not info.uri.endswith(".json"):
            continue
        with contextlib.suppress(ValueError):
            value = json.loads(store.read_bytes(info.uri))
            if isinstance(value, dict):
                found.append(value)
    return found


# Files merged at once; bounds open files and buffers whatever the number of parts.
MERGE_FAN_IN = 64


def _download_parts(store: ObjectStore, layout: OutputLayout, workdir: Path) -> list[Path]:
    """Every part, in key order, as local files (disk, not memory, holds the output)."""
    local: list[Path] = []
    for index, uri in enumerate(_part_uris(store, layout)):
        path = workdir / f"part-{index:08d}.jsonl"
        store.download_file(uri, path)
        local.append(path)
    return local


def _iter_file(path: Path) -> Iterator[Record]:
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                yield records.decode_record(raw)


def _answered_lines(parts: list[Path], expected: LineSet) -> tuple[LineSet, int]:
    seen = LineSet()
    duplicates = 0
    for path in parts:
        for record in _iter_file(path):
            if record.lineno not in expected:
                log.warning("a part answers line %d, which is not a request", record.lineno)
            elif not seen.add(record.lineno):
                duplicates += 1
    return seen, duplicates


def _sorted_records(parts: list[Path], workdir: Path) -> Iterator[Record]:
    """All records by line number: each part is sorted, so a k-way merge (in passes of
    MERGE_FAN_IN files) sorts them. heapq.merge is stable, so among copies of one line the
    one from the earliest part comes first."""
    runs = list(parts)
    generation = 0
    while len(runs) > MERGE_FAN_IN:
        merged: list[Path] = []
        for start in range(0, len(runs), MERGE_FAN_IN):
            group = runs[start : start + MERGE_FAN_IN]
            target = workdir / f"run-{generation}-{start:08d}.jsonl"
            with target.open("wb") as handle:
                for record in heapq.merge(*map(_iter_file, group), key=_lineno):
                    handle.write(record.encode())
            for path in group:
                path.unlink()
            merged.append(target)
        runs = merged
        generation += 1
    yield from heapq.merge(*map(_iter_file, runs), key=_lineno)


def _lineno(record: Record) -> int:
    return record.lineno


def _deduplicated(ordered: Iterator[Record], expected: LineSet) -> Iterator[Record]:
    """The first record of each request line; records of lines that are no request (which
    only a changed input file could cause) are dropped."""
    last = 0
    for record in ordered:
        if record.lineno != last and record.lineno in expected:
            last = record.lineno
            yield record


def _unanswered(
    source: ObjectStore, config: FinalizeConfig, expected: LineSet, seen: LineSet
) -> Iterator[Record]:
    """Error records for the requests no shard answered, in line order."""
    code = _REASON_CODES[config.reason]
    message = records.stop_message(code)
    for lineno, raw in enumerate(source.read_lines(config.input_uri), start=1):
        if lineno in expected and lineno not in seen:
            yield records.error_record(
                config.batch_name, lineno, records.custom_id_of(raw), code, message
            )


def finalize(config: FinalizeConfig) -> dict[str, Any]:
    """Merge the shards' parts; return the manifest (the existing one if already final)."""
    out = get_store(config.output_uri, config.settings)
    layout = OutputLayout(config.output_uri)
    manifest_uri = layout.manifest
    try:
        existing = out.head(manifest_uri)
    except (BucketNotFound, AccessDenied) as exc:
        raise PermanentError(f"output {config.output_uri} cannot be used: {exc}") from exc
    if existing is not None:
        log.info("already finalized: %s exists", manifest_uri)
        manifest: dict[str, Any] = json.loads(out.read_bytes(manifest_uri))
        return manifest

    source = get_store(config.input_uri, config.settings)
    if not source.exists(config.input_uri):
        raise PermanentError(f"input {config.input_uri} does not exist")
    expected, total_lines, input_sha = _scan_input(source, config.input_uri)

    output_file = layout.output_file
    errors_file = layout.errors_file
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="llmbatch-finalize-") as workdir:
        local_parts = _download_parts(out, layout, Path(workdir))
        seen, duplicates = _answered_lines(local_parts, expected)
        missing = expected.count - seen.count
        if missing and config.reason == "none":
            raise PermanentError(
                f"{missing} of {expected.count} requests have no result; the shards did not "
                "finish (finalize with --reason expired|cancelled to record them as such)"
            )
        unanswered: Iterator[Record] = iter(())
        if missing:
            unanswered = _unanswered(source, config, expected, seen)
        ordered = heapq.merge(
            _deduplicated(_sorted_records(local_parts, Path(workdir)), expected),
            unanswered,
            key=lambda record: record.lineno,
        )
        with contextlib.ExitStack() as stack:
            ok_writer = _HashingWriter(stack.enter_context(out.open_write(output_file)))
            err_writer = _HashingWriter(stack.enter_context(out.open_write(errors_file)))
            for record in ordered:
                tally.add(record)
                writer = ok_writer if record.kind == records.OUTPUT else err_writer
                writer.write_line(record.line)
    if duplicates:
        log.warning("dropped %d duplicate results of already answered lines", duplicates)

    checkpoints = _read_json_objects(out, layout.checkpoints_dir)
    progress = _read_json_objects(out, layout.progress_dir)
    first = checkpoints[0] if checkpoints else {}
    started = [p["startedAt"] for p in progress if isinstance(p.get("startedAt"), str)]
    updated = [p["updatedAt"] for p in progress if isinstance(p.get("updatedAt"), str)]
    shard_count = config.shard_count or max(
        [int(c.get("shardCount", 1)) for c in checkpoints] or [1]
    )
    manifest = {
        "batch": config.batch_name,
        "input": config.input_uri,
        "outputFile": output_file,
        "errorFile": errors_file,
        "endpoint": first.get("endpoint"),
        "model": first.get("model"),
        "engineArgs": first.get("engineArgs"),
        "shardCount": shard_count,
        "reason": config.reason,
        "requestCounts": {
            "total": expected.count,
            "completed": tally.completed,
            "failed": tally.failed,
        },
        "usage": {
            "promptTokens": tally.prompt_tokens,
            "completionTokens": tally.completion_tokens,
        },
        "sha256": {
            "input": input_sha,
            "output": ok_writer.sha.hexdigest(),
            "errors": err_writer.sha.hexdigest(),
        },
        "inputLines": total_lines,
        "timing": {
            "startedAt": min(started) if started else None,
            "runFinishedAt": max(updated) if updated else None,
            "finalizedAt": rfc3339(),
        },
        "runnerVersion": RUNNER_VERSION,
        "engineVersion": engine_version(),
    }
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    if not out.write_bytes_if_absent(manifest_uri, data, content_type="application/json"):
        # Another finalize won the race; its manifest describes the same files.
        winner: dict[str, Any] = json.loads(out.read_bytes(manifest_uri))
        return winner
    log.info(
        "finalized: %d completed, %d failed of %d",
        tally.completed,
        tally.failed,
        expected.count,
    )
    return manifest
