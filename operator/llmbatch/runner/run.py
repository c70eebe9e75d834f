"""``llmbatch-runner run``: one shard of a planned batch, claiming chunks until none is left.

The plan (``api/plan.py``) cut the input into chunks. A shard claims a chunk through its lease
(``leases.py``), reads only the chunk's byte ranges, feeds the engine in the chunk's order
(lines sharing a prompt prefix are adjacent) and, once every line is answered, commits one
part for it and marks the lease done. The next chunk is claimed and read in the background as
soon as the current one is fully submitted, so the engine stays busy across chunk boundaries.
A chunk that already has parts (a preempted or stalled holder's work) is resumed: the lines in
them are skipped.

At the deadline or on SIGTERM the shard stops claiming, gives in-flight requests half the
grace period, commits what finished of each open chunk as a part and releases their leases.
Nothing is recorded as expired or cancelled here: a SIGTERM may be a preemption after which
another pod runs the lines, and finalize records whatever no shard answered when the batch
ends expired or cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from llmbatch.api.documents import (
    Counts,
    ModelRef,
    ShardCheckpoint,
    ShardProgress,
    ShardState,
    TokenUsage,
)
from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.layout import OutputLayout
from llmbatch.api.lines import Endpoint, ErrorCode
from llmbatch.api.plan import PlanSummary
from llmbatch.api.timefmt import rfc3339
from llmbatch.runner import records
from llmbatch.runner.chunkwork import OpenChunk, Runnable
from llmbatch.runner.claims import ChunkQueue
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.heap import HeapTrimmer
from llmbatch.runner.leases import DEFAULT_LEASE_SECONDS, DEFAULT_RENEW_SECONDS, LeaseKeeper, Leases
from llmbatch.runner.metrics import DEFAULT_PORT, RunnerMetrics
from llmbatch.runner.parts import Tally, Uploader, write_document
from llmbatch.runner.planned import check_input, require_plan
from llmbatch.runner.progress import ProgressTracker, previous_progress
from llmbatch.runner.records import Record
from llmbatch.runner.source import ChunkSource
from llmbatch.runner.version import RUNNER_VERSION
from llmbatch.storage import (
    ConditionalWritesUnsupported,
    StorageSettings,
    check_conditional_writes,
    get_store,
)

log = logging.getLogger(__name__)

# How long an idle shard sleeps at most before it looks at the stop signal again.
_IDLE_POLL = 0.5


@dataclass
class RunConfig:
    input_uri: str
    output_uri: str
    model_source: str
    served_model_name: str
    endpoint: Endpoint = Endpoint.CHAT_COMPLETIONS
    engine_args: dict[str, Any] = field(default_factory=dict)
    shard_index: int = 0
    shard_count: int = 1
    deadline: datetime | None = None
    progress_seconds: float = 10.0
    grace_seconds: float = 20.0
    metrics_port: int = DEFAULT_PORT
    batch_name: str = ""
    max_in_flight: int = 0
    chat_template: str | None = None
    model_cache_dir: Path | None = None
    settings: StorageSettings | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    renew_seconds: float = DEFAULT_RENEW_SECONDS

    def __post_init__(self) -> None:
        if self.shard_count < 1 or not 0 <= self.shard_index < self.shard_count:
            raise PermanentError(
                f"shard index {self.shard_index} is outside 0..{self.shard_count - 1}"
            )
        if not 0 < self.renew_seconds < self.lease_seconds:
            raise PermanentError(
                f"renew interval {self.renew_seconds}s must be shorter than the lease "
                f"({self.lease_seconds}s)"
            )
        if not self.batch_name:
            self.batch_name = self.output_uri.rstrip("/")


class StopSignal:
    """Why the shard must stop taking work (first cause wins): batch_expired or
    batch_cancelled. Set from a signal handler or another thread.

    batch_cancelled (SIGTERM) only means "stop now": the lines not finished are left to
    another shard, or to finalize when the batch was cancelled. A deadline that has passed
    wins over it (see ShardRun._stop_code)."""

    def __init__(self) -> None:
        self._code: str | None = None
        self._lock = threading.Lock()

    def request(self, code: ErrorCode) -> None:
        with self._lock:
            if self._code is None:
                self._code = code.value

    @property
    def code(self) -> str | None:
        return self._code

    @contextlib.contextmanager
    def on_sigterm(self, also_sigint: bool = False) -> Iterator[None]:
        """Turn SIGTERM (and Ctrl-C if asked) into a stop request while the block runs (main
        thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self.request(ErrorCode.BATCH_CANCELLED)

        signals = [signal.SIGTERM, signal.SIGINT] if also_sigint else [signal.SIGTERM]
        previous = {sig: signal.signal(sig, handler) for sig in signals}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


@dataclass
class RunResult:
    exit_code: ExitCode
    tally: Tally
    total: int | None
    parts: list[str]
    # Lines skipped because an earlier holder of their chunk had committed them.
    recovered_lines: int
    chunks: int = 0


class ShardRun:
    def __init__(self, config: RunConfig, engine: Any | None, stop: StopSignal) -> None:
        self.config = config
        self.engine = engine
        self.stop = stop
        self.in_store = get_store(config.input_uri, config.settings)
        self.out_store = get_store(config.output_uri, config.settings)
        self.layout = OutputLayout(config.output_uri)
        self.batch_key = config.batch_name
        self.shard = config.shard_index
        self.tally = Tally()
        self.metrics = RunnerMetrics(config.batch_name, self.shard)
        self.uploader = Uploader()
        self.writer_id = secrets.token_hex(4)
        # Engine key (the input line) -> (custom_id, chunk index).
        self.in_flight: dict[int, tuple[str, int]] = {}
        self.open: dict[int, OpenChunk] = {}
        self.parts: list[str] = []
        self.recovered_lines = 0
        self.chunks_done = 0
        # Between chunks: return the engine's freed heap pages (see heap.py).
        self.heap = HeapTrimmer()
        self.attempt = 1
        self.last_progress = 0.0
        self.engine_info: dict[str, Any] = {}
        self.plan: PlanSummary | None = None
        self.tracker: ProgressTracker | None = None
        self.keeper: LeaseKeeper | None = None
        self.source: ChunkSource | None = None

    # Setup -------------------------------------------------------------------------------

    def _start(self) -> None:
        plan = self.plan = require_plan(
            self.out_store, self.layout, "the plan step (llmbatch-runner plan) runs first"
        )
        check_input(self.in_store, self.config.input_uri, plan)
        try:
            check_conditional_writes(
                self.out_store, self.layout.leases_dir + f".probe-{self.writer_id}"
            )
        except ConditionalWritesUnsupported as exc:
            raise PermanentError(str(exc)) from exc
        previous = previous_progress(self.out_store, self.layout.progress(self.shard))
        if previous is not None:
            # The shard's counters go on from its last attempt's, so the status never drops.
            self.attempt = previous.attempt + 1
            self.tally = Tally(
                previous.completed,
                previous.failed,
                previous.prompt_tokens,
                previous.completion_tokens,
            )
        self.tracker = ProgressTracker(
            self.shard,
            self.config.shard_count,
            self.attempt,
            time.time(),
            base_tokens=self.tally.prompt_tokens + self.tally.completion_tokens,
        )
        leases = Leases(
            self.out_store,
            self.layout,
            f"shard-{self.shard}-{self.writer_id}",
            self.config.lease_seconds,
        )
        self.keeper = LeaseKeeper(leases, self.config.renew_seconds)
        queue = ChunkQueue(
            plan.chunk_count, self.shard, self.config.shard_count, self.config.renew_seconds
        )
        self.source = ChunkSource(
            queue, self.keeper, self.in_store, self.config.input_uri, self.out_store, self.layout
        )

    def _load_engine(self) -> None:
        from llmbatch.runner.model_source import resolve_model

        path = resolve_model(
            self.config.model_source, self.config.settings, self.config.model_cache_dir
        )
        # Imported only now: vLLM takes seconds to import, and a bad source should fail fast.
        from llmbatch.runner.engine import load_engine

        try:
            self.engine = load_engine(
                path,
                self.config.served_model_name,
                self.config.endpoint,
                self.config.engine_args,
                self.config.max_in_flight,
                self.config.chat_template,
            )
        except Exception as exc:
            raise PermanentError(
                f"model {self.config.model_source} cannot be loaded by vLLM: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.engine_info = self.engine.describe()

    # Feeding the engine ------------------------------------------------------------------

    def _record(self, chunk: OpenChunk, record: Record) -> None:
        chunk.records.append(record)
        self.tally.add(record)
        self.metrics.finished(
            record.kind == records.OUTPUT, record.prompt_tokens, record.completion_tokens
        )

    def _submit(self, chunk: OpenChunk, item: Runnable) -> None:
        model = item.body.get("model")
        if model != self.config.served_model_name:
            served = self.config.served_model_name
            message = f"model {model!r} is not served by this batch; use {served!r}"
            self._record(
                chunk,
                records.error_record(
                    self.batch_key,
                    item.lineno,
                    item.custom_id,
                    ErrorCode.MODEL_NOT_FOUND.value,
                    message,
                ),
            )
            return
        if self.engine is None:
            # Loaded on the first request that needs it: a shard with nothing to run never
            # pays for the model.
            self._load_engine()
        assert self.engine is not None
        # Imported only now: sampling imports vLLM (seconds), which an engine-less shard skips.
        from llmbatch.runner.sampling import RequestError

        try:
            self.engine.submit(
                item.lineno, records.stable_id(self.batch_key, item.lineno), item.body
            )
        except RequestError as exc:
            log.info(
                "request rejected: %s",
                exc.message,
                extra={"custom_id": item.custom_id, "line": item.lineno},
            )
            self._record(
                chunk,
                records.rejected_record(
                    self.batch_key, item.lineno, item.custom_id, exc.status_code, exc.message
                ),
            )
            return
        self.in_flight[item.lineno] = (item.custom_id, chunk.index)
        chunk.in_flight += 1

    def _has_room(self) -> bool:
        return self.engine is None or self.engine.in_flight() < self.engine.capacity

    def _feeding(self) -> OpenChunk | None:
        """The open chunk with lines left to submit (chunks are fed one after another)."""
        assert self.keeper is not None
        for chunk in self.open.values():
            if self.keeper.lost(chunk.index):
                chunk.lost = True
                chunk.pending.clear()
            if chunk.pending:
                return chunk
        return None

    def _fill(self) -> None:
        assert self.source is not None
        while self._has_room() and not self._deadline_passed():
            chunk = self._feeding()
            if chunk is None:
                fetched = self.source.poll()
                if fetched is None:
                    break
                self.open[fetched.index] = fetched
                self.recovered_lines += fetched.resumed_lines
                self._close_drained()
                continue
            self._submit(chunk, chunk.pending.popleft())
        self._close_drained()

    def _step(self) -> None:
        from llmbatch.runner.engine import Finished

        assert self.engine is not None
        for outcome in self.engine.step():
            custom_id, index = self.in_flight.pop(outcome.key)
            chunk = self.open[index]
            chunk.in_flight -= 1
            if isinstance(outcome, Finished):
                record = records.success_record(
                    self.batch_key,
                    outcome.key,
                    custom_id,
                    outcome.body,
                    outcome.prompt_tokens,
                    outcome.completion_tokens,
                )
            else:
                log.info(
                    "request failed in the engine: %s",
                    outcome.message,
                    extra={"custom_id": custom_id, "line": outcome.key},
                )
                record = records.rejected_record(
                    self.batch_key, outcome.key, custom_id, outcome.status_code, outcome.message
                )
            self._record(chunk, record)
        self.metrics.queue_depth.set(self.engine.in_flight())
        self._close_drained()

    # Committing --------------------------------------------------------------------------

    def _close_drained(self) -> None:
        for chunk in [c for c in self.open.values() if c.drained]:
            self._close(chunk)

    def _close(self, chunk: OpenChunk) -> None:
        """Commit the chunk's finished records as one part; mark the lease done if every
        line of the chunk is now answered, else release it for another shard."""
        keeper = self.keeper
        assert keeper is not None
        del self.open[chunk.index]
        if chunk.lost or keeper.lost(chunk.index):
            log.warning("chunk %d: lease lost, %d results dropped", chunk.index, len(chunk.records))
            return
        complete = len(chunk.records) + chunk.resumed_lines >= chunk.chunk.lines
        data = chunk.part_bytes()
        uri = self.layout.chunk_part(chunk.index, chunk.next_part, self.writer_id)
        store, index = self.out_store, chunk.index
        if data:
            self.parts.append(uri[len(self.layout.parts_dir) :])

        def commit() -> None:
            # Still ours? Then the part goes up, and only then the lease says done.
            if not keeper.renew_now(index):
                return
            if data:
                store.write_bytes(uri, data, content_type="application/jsonl")
            if complete:
                keeper.complete(index)
            else:
                keeper.release(index)

        self.uploader.submit(commit)
        self.chunks_done += complete
        self.heap.maybe_trim()

    # Progress ----------------------------------------------------------------------------

    def _progress_payload(self, state: ShardState) -> ShardProgress:
        assert self.tracker is not None
        return self.tracker.snapshot(state, self.tally, self.plan.total if self.plan else None)

    def _progress(self, state: ShardState = "running") -> None:
        self.last_progress = time.monotonic()
        payload = self._progress_payload(state)
        self.metrics.throughput.set(payload.throughput)
        store, uri = self.out_store, self.layout.progress(self.shard)
        self.uploader.submit(lambda: write_document(store, uri, payload))

    def _checkpoint_payload(self, state: ShardState) -> ShardCheckpoint:
        return ShardCheckpoint(
            shard=self.shard,
            shard_count=self.config.shard_count,
            state=state,
            attempt=self.attempt,
            parts=list(self.parts),
            request_counts=Counts(completed=self.tally.completed, failed=self.tally.failed),
            usage=TokenUsage(
                prompt_tokens=self.tally.prompt_tokens,
                completion_tokens=self.tally.completion_tokens,
            ),
            input=self.config.input_uri,
            model=ModelRef(name=self.config.served_model_name, source=self.config.model_source),
            endpoint=self.config.endpoint.value,
            engine_args=self.engine_info.get("engineArgs", self.config.engine_args),
            runner_version=RUNNER_VERSION,
            updated_at=rfc3339(),
        )

    def _finish(self, state: ShardState) -> None:
        """The last progress and the shard's checkpoint summary, then wait for every write."""
        self._progress(state)
        checkpoint = self._checkpoint_payload(state)
        store, uri = self.out_store, self.layout.checkpoint(self.shard)
        self.uploader.submit(lambda: write_document(store, uri, checkpoint))
        self.uploader.drain()

    # Stop conditions ---------------------------------------------------------------------

    def _past_deadline(self) -> bool:
        deadline = self.config.deadline
        return deadline is not None and time.time() >= deadline.timestamp()

    def _deadline_passed(self) -> bool:
        """True when the shard must stop (deadline reached or a stop was requested)."""
        if self._past_deadline():
            self.stop.request(ErrorCode.BATCH_EXPIRED)
        return self.stop.code is not None

    def _stop_code(self) -> str:
        # A SIGTERM that comes after the deadline is the deadline's doing (the operator stops
        # late shards).
        if self._past_deadline():
            return ErrorCode.BATCH_EXPIRED.value
        assert self.stop.code is not None
        return self.stop.code

    def _shutdown(self, code: str) -> ExitCode:
        assert self.source is not None
        started = time.monotonic()
        grace = self.config.grace_seconds
        expired = code == ErrorCode.BATCH_EXPIRED.value
        log.warning("stopping (%s): finishing in-flight requests for up to %.0fs", code, grace / 2)
        self.source.stop()
        if self.engine is not None:
            while self.engine.in_flight() and time.monotonic() - started < grace / 2:
                self._step()
            aborted = self.engine.abort_all()
            for key in aborted:
                _, index = self.in_flight.pop(key)
                self.open[index].in_flight -= 1
            if aborted:
                log.warning("%d in-flight requests aborted; they stay unanswered", len(aborted))
        for chunk in list(self.open.values()):
            chunk.pending.clear()
            self._close(chunk)
        log.warning("lines not answered are left to another shard or to finalize")
        state: ShardState = "expired" if expired else "cancelled"
        self._finish(state)
        return ExitCode.EXPIRED if expired else ExitCode.CANCELLED

    # The run -----------------------------------------------------------------------------

    def run(self) -> RunResult:
        self._start()
        self.metrics.serve(self.config.metrics_port)
        try:
            self._progress()
            if self.engine is not None:
                self.engine_info = self.engine.describe()
            code = self._loop()
        except BaseException:
            with contextlib.suppress(Exception):
                self.uploader.drain()
                write_document(
                    self.out_store,
                    self.layout.progress(self.shard),
                    self._progress_payload("failed"),
                )
            raise
        finally:
            self._close_all()
        total = self.plan.total if self.plan else None
        return RunResult(
            code, self.tally, total, self.parts, self.recovered_lines, self.chunks_done
        )

    def _close_all(self) -> None:
        if self.source is not None:
            with contextlib.suppress(Exception):
                self.source.stop()
        self.uploader.close()
        if self.keeper is not None:
            self.keeper.release_all()
            self.keeper.close()

    def _loop(self) -> ExitCode:
        assert self.source is not None
        while True:
            if self._deadline_passed():
                return self._shutdown(self._stop_code())
            self._fill()
            if self.engine is not None and self.engine.in_flight():
                self._step()
            elif self.source.idle and not self.open:
                break
            else:
                self.source.wait(_IDLE_POLL)
            if time.monotonic() - self.last_progress >= self.config.progress_seconds:
                self._progress()
        self._finish("done")
        return ExitCode.OK


def run_shard(
    config: RunConfig, engine: Any | None = None, stop: StopSignal | None = None
) -> RunResult:
    """Run one shard until every chunk of the plan is done (or to its deadline / a stop).

    ``engine`` lets a caller reuse a loaded engine (tests, ``llmbatch run``); otherwise the
    model is resolved and loaded here. Raises PermanentError for what retrying cannot fix.
    """
    if engine is not None and engine.endpoint != config.endpoint:
        raise PermanentError(
            f"the engine serves {engine.endpoint.value}, the batch wants {config.endpoint.value}"
        )
    return ShardRun(config, engine, stop or StopSignal()).run()
