"""``llmbatch-runner finalize``: the plan's error parts and the chunks' parts into
output.jsonl, errors.jsonl and manifest.json, in input line order.

Streams segment by segment (``api/plan.py``): the chunks of a segment hold only that
segment's lines, and each part is sorted by line, so a k-way merge of one segment's parts
(plus the plan's error records, themselves in line order) gives the segment's records in
input order. Memory and local disk stay bounded whatever the batch size: one segment's open
part streams and its byte ranges, nothing on disk; both files stream to the store as
multipart uploads, hashed on the way. A line met twice (a part of a holder that lost its
lease) is kept once: the first part's. A runnable line no part answers becomes a
batch_expired / batch_cancelled error when the batch ended that way (its custom_id read from
the input by a ranged read), or fails finalize when the batch should have completed.

The manifest is written only if absent: once it exists, finalize answers with it and changes
nothing, so a re-run (a retried finalize Job) is harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple, TypeVar

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
from llmbatch.api.plan import PlanSummary, Segment
from llmbatch.api.timefmt import rfc3339
from llmbatch.runner import records
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.parts import Tally, iter_part_records
from llmbatch.runner.plan import read_chunk
from llmbatch.runner.planned import check_input, require_plan
from llmbatch.runner.records import Record
from llmbatch.runner.version import RUNNER_VERSION, engine_version
from llmbatch.storage import (
    AccessDenied,
    BucketNotFound,
    ObjectStore,
    StorageSettings,
    get_store,
)

log = logging.getLogger(__name__)

# Read size per open part: a segment's parts are all open at once during its merge.
PART_BLOCK = 32 * 1024
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


class _HashingWriter:
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def write_line(self, line: bytes) -> None:
        data = line + b"\n"
        self.inner.write(data)
        self.sha.update(data)


class _Span(NamedTuple):
    """A byte range of runnable lines (first_line .. first_line + lines - 1)."""

    first_line: int
    lines: int
    offset: int
    length: int


@dataclass
class _Context:
    out: ObjectStore
    source: ObjectStore
    config: FinalizeConfig
    layout: OutputLayout
    duplicates: int = 0
    unanswered: int = 0
    # The input bytes of the last span read for unanswered lines' custom_ids.
    cached: tuple[int, list[bytes]] = field(default=(-1, []))


def _segment_spans(ctx: _Context, segment: Segment) -> list[_Span]:
    """Every byte range of the segment's chunks, in line order."""
    spans: list[_Span] = []
    for index in range(segment.first_chunk, segment.first_chunk + segment.chunks):
        chunk = read_chunk(ctx.out, ctx.layout, index)
        spans.extend(_Span(r.first_line, r.lines, r.offset, r.length) for r in chunk.ranges)
    spans.sort()
    return spans


def _segment_parts(ctx: _Context, segment: Segment) -> list[str]:
    """The segment's parts, chunk by chunk and by part number: the order that decides which
    copy of a line is kept."""
    found: list[str] = []
    for index in range(segment.first_chunk, segment.first_chunk + segment.chunks):
        parts = [
            (number, info.uri)
            for info in ctx.out.list(ctx.layout.chunk_parts_dir(index))
            if (number := part_number(info.uri)) is not None
        ]
        found.extend(uri for _, uri in sorted(parts))
    return found


def _lineno(record: Record) -> int:
    return record.lineno


def _first_per_line(ctx: _Context, ordered: Iterator[Record]) -> Iterator[Record]:
    last = 0
    for record in ordered:
        if record.lineno == last:
            ctx.duplicates += 1
            continue
        last = record.lineno
        yield record


def _unanswered(ctx: _Context, lineno: int, span: _Span) -> Record:
    if ctx.config.reason == "none":
        raise PermanentError(
            f"request on line {lineno} of {ctx.config.input_uri} has no result; the shards did "
            "not finish (finalize with --reason expired|cancelled to record them as such)"
        )
    ctx.unanswered += 1
    if ctx.cached[0] != span.offset:
        data = ctx.source.read_range(ctx.config.input_uri, span.offset, span.length)
        ctx.cached = (span.offset, data.split(b"\n"))
    raw = ctx.cached[1][lineno - span.first_line]
    code = _REASON_CODES[ctx.config.reason]
    return records.error_record(
        ctx.config.batch_name, lineno, records.custom_id_of(raw), code, records.stop_message(code)
    )


def _with_unanswered(
    ctx: _Context, answered: Iterator[Record], spans: list[_Span]
) -> Iterator[Record]:
    """Walk the segment's runnable lines in order: each line's answer, or an error record
    for it; answers for lines that are no runnable line of the segment are dropped."""
    current = next(answered, None)
    for span in spans:
        for lineno in range(span.first_line, span.first_line + span.lines):
            while current is not None and current.lineno < lineno:
                log.warning("a part answers line %d, which is no request", current.lineno)
                current = next(answered, None)
            if current is not None and current.lineno == lineno:
                yield current
                current = next(answered, None)
            else:
                yield _unanswered(ctx, lineno, span)
    while current is not None:
        log.warning("a part answers line %d, which is no request", current.lineno)
        current = next(answered, None)


class _Peekable:
    """The plan's error records in line order, taken segment by segment."""

    def __init__(self, items: Iterator[Record]) -> None:
        self._items = items
        self._head = next(items, None)

    def upto(self, last_line: int | None) -> Iterator[Record]:
        while self._head is not None and (last_line is None or self._head.lineno <= last_line):
            yield self._head
            self._head = next(self._items, None)


def _plan_errors(ctx: _Context) -> Iterator[Record]:
    for info in ctx.out.list(ctx.layout.plan_errors_dir):
        yield from iter_part_records(ctx.out, info.uri)


def _segment_records(ctx: _Context, segment: Segment, errors: _Peekable) -> Iterator[Record]:
    spans = _segment_spans(ctx, segment)
    streams = [iter_part_records(ctx.out, uri, PART_BLOCK) for uri in _segment_parts(ctx, segment)]
    answered = _first_per_line(ctx, heapq.merge(*streams, key=_lineno))
    yield from heapq.merge(
        _with_unanswered(ctx, answered, spans), errors.upto(segment.last_line), key=_lineno
    )


@dataclass
class _Merged:
    tally: Tally
    output_sha: str
    errors_sha: str


def _merge(ctx: _Context, plan: PlanSummary) -> _Merged:
    """Write output.jsonl and errors.jsonl, segment after segment."""
    tally = Tally()
    errors = _Peekable(_plan_errors(ctx))
    with contextlib.ExitStack() as stack:
        output = _HashingWriter(stack.enter_context(ctx.out.open_write(ctx.layout.output_file)))
        failed = _HashingWriter(stack.enter_context(ctx.out.open_write(ctx.layout.errors_file)))

        def write(record: Record) -> None:
            tally.add(record)
            (output if record.kind == records.OUTPUT else failed).write_line(record.line)

        for segment in plan.segments:
            for record in _segment_records(ctx, segment, errors):
                write(record)
        for record in errors.upto(None):
            write(record)
    if ctx.duplicates:
        log.warning("dropped %d duplicate results of already answered lines", ctx.duplicates)
    if ctx.unanswered:
        log.info("%d requests no shard answered recorded as %s", ctx.unanswered, ctx.config.reason)
    return _Merged(tally, output.sha.hexdigest(), failed.sha.hexdigest())


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


def _build_manifest(ctx: _Context, plan: PlanSummary, merged: _Merged) -> Manifest:
    """The manifest: the merge's counts and hashes, and what the shards said about the run."""
    out, config, layout = ctx.out, ctx.config, ctx.layout
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
        endpoint=first.endpoint if first else plan.endpoint,
        model=first.model if first else None,
        engine_args=first.engine_args if first else None,
        shard_count=config.shard_count or max([c.shard_count for c in checkpoints] or [1]),
        reason=config.reason,
        request_counts=Counts(total=plan.total, completed=tally.completed, failed=tally.failed),
        unanswered=ctx.unanswered,
        usage=TokenUsage(
            prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens
        ),
        sha256=FileHashes(
            input=plan.input_sha256, output=merged.output_sha, errors=merged.errors_sha
        ),
        input_lines=plan.input_lines,
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
    """Merge the plan's and the chunks' parts; return the manifest (the existing one if
    already final)."""
    out = get_store(config.output_uri, config.settings)
    layout = OutputLayout(config.output_uri)
    try:
        existing = out.head(layout.manifest)
    except (BucketNotFound, AccessDenied) as exc:
        raise PermanentError(f"output {config.output_uri} cannot be used: {exc}") from exc
    if existing is not None:
        log.info("already finalized: %s exists", layout.manifest)
        return _read_manifest(out, layout.manifest)
    plan = require_plan(
        out,
        layout,
        "this finalize merges planned batches only; a batch run before the plan step "
        "(parts per shard) must be finalized by the runner version that ran it",
    )
    source = get_store(config.input_uri, config.settings)
    check_input(source, config.input_uri, plan)
    ctx = _Context(out, source, config, layout)
    merged = _merge(ctx, plan)
    manifest = _build_manifest(ctx, plan, merged)
    data = manifest.to_json(indent=2)
    if not out.write_bytes_if_absent(layout.manifest, data, content_type="application/json"):
        # Another finalize won the race; its manifest describes the same files.
        return _read_manifest(out, layout.manifest)
    log.info(
        "finalized: %d completed, %d failed of %d",
        merged.tally.completed,
        merged.tally.failed,
        plan.total,
    )
    return manifest.to_dict()
