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
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from llmbatch.api.documents import (
    Counts,
    Document,
    FileHashes,
    FinalizeReason,
    Manifest,
    ShardCheckpoint,
    ShardProgress,
    Timing,
    TokenUsage,
)
from llmbatch.api.layout import OutputLayout, part_number
from llmbatch.api.lines import ErrorCode
from llmbatch.api.timefmt import rfc3339
from llmbatch.runner import records
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.parts import LineSet, Tally
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

_REASON_CODES = {
    "expired": ErrorCode.BATCH_EXPIRED.value,
    "cancelled": ErrorCode.BATCH_CANCELLED.value,
}


@dataclass
class FinalizeConfig:
    input_uri: str
    output_uri: str
    shard_count: int | None = None
    reason: FinalizeReason = "none"
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


@dataclass
class _InputScan:
    expected: LineSet
    lines: int
    sha256: str


def _scan_input(store: ObjectStore, uri: str) -> _InputScan:
    """Non-blank line numbers (the requests), the number of lines, and the input's sha256."""
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
    return _InputScan(expected, lines, reader.sha.hexdigest())


def _part_uris(store: ObjectStore, layout: OutputLayout) -> Iterator[str]:
    # Key order: by shard, then part number (zero-padded), the order each shard produced
    # them in; each part is itself sorted by line number.
    for info in store.list(layout.parts_dir):
        if part_number(info.uri) is not None:
            yield info.uri


D = TypeVar("D", bound=Document)


def _read_documents(store: ObjectStore, prefix: str, model: type[D]) -> list[D]:
    """Every readable document under the prefix, in key order; a damaged one is skipped."""
    found: list[D] = []
    for info in store.list(prefix):
        if not info.uri.endswith(".json"):
            continue
        with contextlib.suppress(ValueError):  # bad JSON or a document of another shape
            found.append(model.model_validate_json(store.read_bytes(info.uri)))
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


@dataclass
class _Merged:
    tally: Tally
    output_sha: str
    errors_sha: str


def _merge(
    out: ObjectStore,
    source: ObjectStore,
    config: FinalizeConfig,
    layout: OutputLayout,
    expected: LineSet,
) -> _Merged:
    """Write output.jsonl and errors.jsonl from the parts (and the unanswered lines)."""
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
            ok_writer = _HashingWriter(stack.enter_context(out.open_write(layout.output_file)))
            err_writer = _HashingWriter(stack.enter_context(out.open_write(layout.errors_file)))
            for record in ordered:
                tally.add(record)
                writer = ok_writer if record.kind == records.OUTPUT else err_writer
                writer.write_line(record.line)
    if duplicates:
        log.warning("dropped %d duplicate results of already answered lines", duplicates)
    return _Merged(tally, ok_writer.sha.hexdigest(), err_writer.sha.hexdigest())


def _build_manifest(
    out: ObjectStore,
    config: FinalizeConfig,
    layout: OutputLayout,
    scanned: _InputScan,
    merged: _Merged,
) -> Manifest:
    """The manifest: the merge's counts and hashes, and what the shards said about the run."""
    checkpoints = _read_documents(out, layout.checkpoints_dir, ShardCheckpoint)
    progress = _read_documents(out, layout.progress_dir, ShardProgress)
    first = checkpoints[0] if checkpoints else None
    started = [p.started_at for p in progress if p.started_at is not None]
    updated = [p.updated_at for p in progress if p.updated_at is not None]
    tally = merged.tally
    return Manifest(
        batch=config.batch_name,
        input=config.input_uri,
        output_file=layout.output_file,
        error_file=layout.errors_file,
        endpoint=first.endpoint if first else None,
        model=first.model if first else None,
        engine_args=first.engine_args if first else None,
        shard_count=config.shard_count or max([c.shard_count for c in checkpoints] or [1]),
        reason=config.reason,
        request_counts=Counts(
            total=scanned.expected.count, completed=tally.completed, failed=tally.failed
        ),
        usage=TokenUsage(
            prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens
        ),
        sha256=FileHashes(input=scanned.sha256, output=merged.output_sha, errors=merged.errors_sha),
        input_lines=scanned.lines,
        timing=Timing(
            started_at=min(started) if started else None,
            run_finished_at=max(updated) if updated else None,
            finalized_at=rfc3339(),
        ),
        runner_version=RUNNER_VERSION,
        engine_version=engine_version(),
    )


def _read_manifest(store: ObjectStore, uri: str) -> dict[str, Any]:
    return Manifest.model_validate_json(store.read_bytes(uri)).to_dict()


def finalize(config: FinalizeConfig) -> dict[str, Any]:
    """Merge the shards' parts; return the manifest (the existing one if already final)."""
    out = get_store(config.output_uri, config.settings)
    layout = OutputLayout(config.output_uri)
    try:
        existing = out.head(layout.manifest)
    except (BucketNotFound, AccessDenied) as exc:
        raise PermanentError(f"output {config.output_uri} cannot be used: {exc}") from exc
    if existing is not None:
        log.info("already finalized: %s exists", layout.manifest)
        return _read_manifest(out, layout.manifest)

    source = get_store(config.input_uri, config.settings)
    if not source.exists(config.input_uri):
        raise PermanentError(f"input {config.input_uri} does not exist")
    scanned = _scan_input(source, config.input_uri)
    merged = _merge(out, source, config, layout, scanned.expected)
    manifest = _build_manifest(out, config, layout, scanned, merged)
    data = manifest.to_json(indent=2)
    if not out.write_bytes_if_absent(layout.manifest, data, content_type="application/json"):
        # Another finalize won the race; its manifest describes the same files.
        return _read_manifest(out, layout.manifest)
    log.info(
        "finalized: %d completed, %d failed of %d",
        merged.tally.completed,
        merged.tally.failed,
        scanned.expected.count,
    )
    return manifest.to_dict()
