"""The plan step: one pass over the input, the immutable plan under ``<output>/plan/``.

Every line is validated with the file rules (``api.lines``) and the batch's model; duplicate
custom_ids are found with a disk-backed index. Invalid lines become error records at once
(``parts/plan/``); runnable lines are counted in tokens and cut, segment by segment, into
prefix-grouped chunks of byte ranges. Chunks are written first, error parts next, plan.json
last and only if absent: the plan exists once plan.json does, and a retried step either finds
it or rewrites the same chunks (the cut is a function of the input and the limits).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmbatch.api.layout import OutputLayout
from llmbatch.api.lines import Endpoint, ErrorCode, FileValidator, Limits, LineError, ValidLine
from llmbatch.api.plan import Chunk, PlanSummary, Segment
from llmbatch.api.timefmt import now_rfc3339
from llmbatch.runner import records
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.plan.chunking import ChunkLimits, SegmentLines, cut
from llmbatch.runner.plan.counting import LineTokens, prompt_counter
from llmbatch.runner.plan.dupindex import DiskIdSet
from llmbatch.runner.plan.errorparts import ErrorParts
from llmbatch.runner.plan.grouping import prefix_keys
from llmbatch.runner.plan.scan import HashingReader, PhysicalLine, physical_lines
from llmbatch.runner.version import RUNNER_VERSION
from llmbatch.storage import (
    AccessDenied,
    BucketNotFound,
    ObjectNotFound,
    ObjectStore,
    StorageSettings,
    get_store,
)

log = logging.getLogger(__name__)

# The gateway holds uploads to OpenAI's per-file limits; a BatchJob's input may be any size.
NO_FILE_LIMITS = Limits(max_lines=2**62, max_bytes=2**62)
# Lines whose prompts are tokenized in one call (bounded: their bodies wait in memory).
TOKEN_BATCH = 256
# Chunk objects written at once (S3 PUTs are slow one by one, and small).
WRITERS = 8


@dataclass
class PlanConfig:
    input_uri: str
    output_uri: str
    model_source: str
    served_model_name: str
    endpoint: Endpoint = Endpoint.CHAT_COMPLETIONS
    settings: StorageSettings | None = None
    chunk_lines: int = 1000
    chunk_bytes: int = 4 * 1024 * 1024
    segment_lines: int = 65536
    # Scratch space for the duplicate index (default: the system's temporary directory).
    work_dir: Path | None = None
    # Names the batch in the error records' ids, as the runner's --batch-name does.
    batch_name: str = ""
    engine_args: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None

    def __post_init__(self) -> None:
        for name in ("chunk_lines", "chunk_bytes", "segment_lines"):
            if getattr(self, name) < 1:
                raise PermanentError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.batch_name:
            self.batch_name = self.output_uri.rstrip("/")


def read_plan(store: ObjectStore, layout: OutputLayout) -> PlanSummary | None:
    """The plan's summary, or None while there is no plan."""
    try:
        data = store.read_bytes(layout.plan_summary)
    except ObjectNotFound:
        return None
    return PlanSummary.model_validate_json(data)


def read_chunk(store: ObjectStore, layout: OutputLayout, index: int) -> Chunk:
    return Chunk.model_validate_json(store.read_bytes(layout.chunk(index)))


def make_plan(config: PlanConfig) -> PlanSummary:
    """The batch's plan: the existing one when plan.json is there, else a new one."""
    store = get_store(config.output_uri, config.settings)
    layout = OutputLayout(config.output_uri)
    with _storage_errors("output", config.output_uri):
        existing = read_plan(store, layout)
        if existing is not None:
            _check_same_input(existing, config)
            log.info("plan exists: %d lines in %d chunks", existing.total, existing.chunk_count)
            return existing
        with tempfile.TemporaryDirectory(prefix="llmbatch-plan-", dir=config.work_dir) as work:
            summary = Planner(config, store, layout, Path(work)).plan()
        if store.write_bytes_if_absent(
            layout.plan_summary, summary.to_json(indent=2), content_type="application/json"
        ):
            return summary
        # Another plan step got there first: its plan stands.
        winner = read_plan(store, layout)
        assert winner is not None
        return winner


def _check_same_input(plan: PlanSummary, config: PlanConfig) -> None:
    """An output prefix holds one batch: a plan of another input must not be run instead."""
    if plan.input != config.input_uri:
        raise PermanentError(
            f"output {config.output_uri} already holds the plan of {plan.input}, "
            f"not of {config.input_uri}; use another output"
        )


@contextmanager
def _storage_errors(what: str, uri: str) -> Iterator[None]:
    """Storage failures retrying cannot fix become PermanentError naming the URI."""
    try:
        yield
    except ObjectNotFound as exc:
        raise PermanentError(f"{what} {uri} does not exist: {exc}") from exc
    except (BucketNotFound, AccessDenied) as exc:
        raise PermanentError(f"{what} {uri} cannot be read: {exc}") from exc


@dataclass
class _Tally:
    runnable: int = 0
    prompt_tokens: int = 0
    max_completion_tokens: int = 0


class Planner:
    """One pass: validate, count, group and cut; writes chunks and error parts as it goes."""

    def __init__(
        self, config: PlanConfig, store: ObjectStore, layout: OutputLayout, work: Path
    ) -> None:
        self.config = config
        self.store = store
        self.layout = layout
        self.work = work
        self.limits = ChunkLimits(config.chunk_lines, config.chunk_bytes)
        counter, self.token_counter = prompt_counter(
            config.model_source, config.chat_template, config.settings
        )
        max_model_len = config.engine_args.get("max_model_len")
        self.tokens = LineTokens(
            counter,
            config.endpoint.value,
            max_model_len if isinstance(max_model_len, int) else None,
        )
        self.errors = ErrorParts(store, layout)
        self.segments: list[Segment] = []
        self.pending: list[Future[None]] = []
        # Plain ints per line; the pydantic summary is filled once, at the end.
        self.tally = _Tally()
        # Runnable lines of the current segment whose tokens are not counted yet.
        self.uncounted: list[tuple[int, dict[str, Any]]] = []
        self.summary = PlanSummary(
            input=config.input_uri,
            chunk_lines=config.chunk_lines,
            chunk_bytes=config.chunk_bytes,
            token_counter=self.token_counter,
            endpoint=config.endpoint.value,
            model=config.served_model_name,
            runner_version=RUNNER_VERSION,
        )

    def plan(self) -> PlanSummary:
        source = get_store(self.config.input_uri, self.config.settings)
        with (
            DiskIdSet(self.work) as seen,
            ThreadPoolExecutor(WRITERS, thread_name_prefix="plan-write") as pool,
        ):
            validator = FileValidator(
                endpoint=self.config.endpoint, limits=NO_FILE_LIMITS, seen_ids=seen
            )
            with _storage_errors("input", self.config.input_uri):
                reader = HashingReader(source.open_read(self.config.input_uri))
                with reader.source:
                    self._scan(reader, validator, pool)
            self._wait_writes()
        self.summary.error_parts = self.errors.close()
        self.summary.runnable = self.tally.runnable
        self.summary.invalid = self.errors.count
        self.summary.total = self.tally.runnable + self.errors.count
        self.summary.prompt_tokens = self.tally.prompt_tokens
        self.summary.max_completion_tokens = self.tally.max_completion_tokens
        self.summary.segments = self.segments
        self.summary.created_at = now_rfc3339()
        log.info(
            "plan: %d requests (%d runnable, %d invalid) in %d chunks, %d segments",
            self.summary.total,
            self.summary.runnable,
            self.summary.invalid,
            self.summary.chunk_count,
            len(self.segments),
        )
        return self.summary

    def _scan(
        self,
        reader: HashingReader,
        validator: FileValidator,
        pool: ThreadPoolExecutor,
    ) -> None:
        segment = SegmentLines(0, 1)
        last = 0
        for line in physical_lines(reader):
            last = line.number
            self._line(line, validator, segment)
            if last - segment.first_line + 1 == self.config.segment_lines:
                self._close_segment(segment, last, reader.size, pool)
                segment = SegmentLines(segment.index + 1, last + 1)
        if last >= segment.first_line:
            self._close_segment(segment, last, reader.size, pool)
        self.summary.input_lines = last
        self.summary.input_bytes = reader.size
        self.summary.input_sha256 = reader.sha256

    def _line(self, line: PhysicalLine, validator: FileValidator, segment: SegmentLines) -> None:
        result = validator.check(line.number, line.raw)
        if result is None:
            return
        if isinstance(result, LineError):
            rejected: records.Record | None = _error_record(self.config.batch_name, result)
        else:
            rejected = self._not_served(result)
        if rejected is not None:
            self.errors.add(rejected)
            return
        assert isinstance(result, ValidLine)
        body = result.request.body
        keys = prefix_keys(body, self.tokens.endpoint)
        position = segment.add(line.number, line.offset, len(line.raw), keys)
        self.tally.runnable += 1
        self.uncounted.append((position, body))
        if len(self.uncounted) >= TOKEN_BATCH:
            self._count_tokens(segment)

    def _count_tokens(self, segment: SegmentLines) -> None:
        """Token counts of the lines waiting for them, in one batch."""
        counts = self.tokens.count([body for _, body in self.uncounted])
        for (position, _), tokens in zip(self.uncounted, counts, strict=True):
            segment.set_tokens(position, tokens)
            self.tally.prompt_tokens += tokens[0]
            self.tally.max_completion_tokens += tokens[1]
        self.uncounted.clear()

    def _not_served(self, line: ValidLine) -> records.Record | None:
        """The error record of a valid line for another model than the batch's."""
        model = line.request.body.get("model")
        served = self.config.served_model_name
        if model == served:
            return None
        return records.error_record(
            self.config.batch_name,
            line.line,
            line.request.custom_id,
            ErrorCode.MODEL_NOT_FOUND.value,
            f"model {model!r} is not served by this batch; use {served!r}",
        )

    def _close_segment(
        self, segment: SegmentLines, last_line: int, input_size: int, pool: ThreadPoolExecutor
    ) -> None:
        self._count_tokens(segment)
        first_chunk = self.summary.chunk_count
        result = cut(segment, self.limits, first_chunk, input_size)
        self.segments.append(
            Segment(
                index=segment.index,
                first_line=segment.first_line,
                last_line=last_line,
                first_chunk=first_chunk,
                chunks=len(result.chunks),
            )
        )
        self.summary.chunk_count += len(result.chunks)
        self.summary.grouped_lines += result.grouped_lines
        # One segment's chunks in flight at most: memory stays bounded when writes are slow.
        self._wait_writes()
        self.pending = [pool.submit(self._write_chunk, chunk) for chunk in result.chunks]

    def _wait_writes(self) -> None:
        for write in self.pending:
            write.result()
        self.pending = []

    def _write_chunk(self, chunk: Chunk) -> None:
        # Overwriting is safe: nothing reads chunks before plan.json exists.
        self.store.write_bytes(
            self.layout.chunk(chunk.index), chunk.to_json(), content_type="application/json"
        )


def _error_record(batch_key: str, error: LineError) -> records.Record:
    body = error.as_error_body()
    return records.error_record(batch_key, error.line, error.custom_id, body.code, body.message)
