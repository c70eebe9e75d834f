"""``llmbatch-runner run``: one shard of a batch, from the input object to committed parts.

The loop keeps a window of requests in the engine and refills it after every engine step, so
the engine is never idle while work remains. Results go to a local spool that becomes an
immutable part every checkpoint interval; a restarted shard rebuilds what is done from the
parts and skips it. At the deadline or on SIGTERM the shard stops taking work and gives
in-flight requests part of the grace period to finish. At the deadline it then records
everything else of its shard as expired. On SIGTERM it records nothing more: a SIGTERM may be
a preemption, a pod deletion or a node drain, after which the Job's next pod must still run
those lines; when the batch really is cancelled, finalize records every missing line as
cancelled. Either way it commits a final part with what finished.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import signal
import tempfile
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
from llmbatch.api.lines import (
    Endpoint,
    ErrorCode,
    FileValidator,
    Limits,
    LineError,
    ValidLine,
)
from llmbatch.api.timefmt import rfc3339
from llmbatch.runner import records
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.metrics import DEFAULT_PORT, RunnerMetrics
from llmbatch.runner.parts import (
    LineSet,
    Recovered,
    Spool,
    Tally,
    Uploader,
    recover,
    write_document,
)
from llmbatch.runner.progress import ProgressTracker
from llmbatch.runner.records import Record
from llmbatch.runner.sharding import route_line
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

# The gateway enforces OpenAI's per-file limits at upload; the runner takes what it is given
# (a BatchJob may point at a larger file) and only refuses lines it cannot hold.
RUNNER_LIMITS = Limits(max_lines=2**62, max_bytes=2**62)


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
    checkpoint_seconds: float = 30.0
    checkpoint_requests: int = 1000
    progress_seconds: float = 10.0
    grace_seconds: float = 20.0
    metrics_port: int = DEFAULT_PORT
    batch_name: str = ""
    max_in_flight: int = 0
    chat_template: str | None = None
    spool_dir: Path | None = None
    model_cache_dir: Path | None = None
    settings: StorageSettings | None = None

    def __post_init__(self) -> None:
        if self.shard_count < 1 or not 0 <= self.shard_index < self.shard_count:
            raise PermanentError(
                f"shard index {self.shard_index} is outside 0..{self.shard_count - 1}"
            )
        if not self.batch_name:
            self.batch_name = self.output_uri.rstrip("/")


class StopSignal:
    """Why the shard must stop taking work (first cause wins): batch_expired or
    batch_cancelled. Set from a signal handler or another thread.

    batch_cancelled (SIGTERM) only means "stop now": the lines not finished are left to the
    next pod, or to finalize when the batch was cancelled. A deadline that has passed wins
    over it (see ShardRun._stop_code)."""

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
    recovered_lines: int


@dataclass(frozen=True)
class _Runnable:
    lineno: int
    custom_id: str
    body: dict[str, Any]


def _check_input(store: ObjectStore, uri: str) -> None:
    try:
        info = store.head(uri)
    except (BucketNotFound, AccessDenied) as exc:
        raise PermanentError(f"input {uri} cannot be read: {exc}") from exc
    if info is None:
        raise PermanentError(f"input {uri} does not exist")


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
        self.total: int | None = None
        self.metrics = RunnerMetrics(config.batch_name, self.shard)
        self.uploader = Uploader()
        self.in_flight: dict[int, str] = {}
        self._spool_dir = config.spool_dir or Path(tempfile.mkdtemp(prefix="llmbatch-spool-"))
        self._own_spool_dir = config.spool_dir is None
        self.spool = Spool(self._spool_dir)
        self.parts: list[str] = []
        self.next_part = 0
        self.last_checkpoint = time.monotonic()
        self.last_progress = 0.0
        self.recovered_lines = 0
        self.attempt = 1
        self.tracker: ProgressTracker | None = None
        self.engine_info: dict[str, Any] = {}
        self.writer_id = secrets.token_hex(4)

    # Setup -------------------------------------------------------------------------------

    def _recover(self) -> LineSet:
        try:
            state: Recovered = recover(self.out_store, self.config.output_uri, self.shard)
            previous = self.out_store.head(self.layout.checkpoint(self.shard))
        except (BucketNotFound, AccessDenied) as exc:
            raise PermanentError(f"output {self.config.output_uri} cannot be used: {exc}") from exc
        if previous is not None:
            with contextlib.suppress(ValueError, ObjectNotFound):
                record = ShardCheckpoint.model_validate_json(
                    self.out_store.read_bytes(self.layout.checkpoint(self.shard))
                )
                self.attempt = record.attempt + 1
        self.tally = state.tally
        self.parts = list(state.parts)
        self.next_part = state.next_part
        self.recovered_lines = state.done.count
        if state.done.count:
            log.info(
                "resuming: %d lines already done in %d parts", state.done.count, len(state.parts)
            )
        return state.done

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

    # Input -------------------------------------------------------------------------------

    def _items(self, done: LineSet) -> Iterator[_Runnable | Record]:
        """This shard's lines not done yet: runnable requests, or error records."""
        validator = FileValidator(endpoint=self.config.endpoint, limits=RUNNER_LIMITS)
        served = self.config.served_model_name
        mine = 0
        lines = self.in_store.read_lines(self.config.input_uri)
        for lineno, raw in enumerate(lines, start=1):
            routed = route_line(lineno, raw, self.config.shard_count)
            if routed is None or routed.shard != self.shard:
                continue
            mine += 1
            result: ValidLine | LineError | None
            if routed.parsed:
                result = validator.check_object(lineno, routed.data, len(raw))
            else:
                result = validator.check(lineno, raw)
            # Done lines are still validated: the validator must see their custom_ids to
            # judge later duplicates exactly as the first attempt did.
            if result is None or lineno in done:
                continue
            if isinstance(result, LineError):
                log.info(
                    "line rejected: %s",
                    result.message,
                    extra={"custom_id": result.custom_id, "line": lineno},
                )
                body = result.as_error_body()
                yield records.error_record(
                    self.batch_key, lineno, result.custom_id, body.code, body.message
                )
                continue
            request = result.request
            model = request.body.get("model")
            if model != served:
                yield records.error_record(
                    self.batch_key,
                    lineno,
                    request.custom_id,
                    ErrorCode.MODEL_NOT_FOUND.value,
                    f"model {model!r} is not served by this batch; use {served!r}",
                )
                continue
            yield _Runnable(lineno, request.custom_id, request.body)
        self.total = mine

    # Results -----------------------------------------------------------------------------

    def _record(self, record: Record) -> None:
        self.spool.add(record)
        self.tally.add(record)
        self.metrics.finished(
            record.kind == records.OUTPUT, record.prompt_tokens, record.completion_tokens
        )
        if self.spool.records >= self.config.checkpoint_requests:
            self._checkpoint()

    def _submit(self, item: _Runnable) -> None:
        from llmbatch.runner.sampling import RequestError

        assert self.engine is not None
        response_id = records.stable_id(self.batch_key, item.lineno)
        try:
            self.engine.submit(item.lineno, response_id, item.body)
        except RequestError as exc:
            log.info(
                "request rejected: %s",
                exc.message,
                extra={"custom_id": item.custom_id, "line": item.lineno},
            )
            self._record(
                records.rejected_record(
                    self.batch_key, item.lineno, item.custom_id, exc.status_code, exc.message
                )
            )
            return
        self.in_flight[item.lineno] = item.custom_id

    def _step(self) -> None:
        from llmbatch.runner.engine import Finished

        assert self.engine is not None
        for outcome in self.engine.step():
            custom_id = self.in_flight.pop(outcome.key, None) or ""
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
            self._record(record)
        self.metrics.queue_depth.set(self.engine.in_flight())

    # Checkpoints and progress ------------------------------------------------------------

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

    def _progress_payload(self, state: ShardState) -> ShardProgress:
        assert self.tracker is not None
        return self.tracker.snapshot(state, self.tally, self.total)

    def _checkpoint(self, state: ShardState = "running") -> None:
        path = self.spool.seal()
        self.last_checkpoint = time.monotonic()
        store = self.out_store
        checkpoint = self.layout.checkpoint(self.shard)
        if path is not None:
            number = self.next_part
            self.next_part += 1
            uri = self.layout.part(self.shard, number, self.writer_id)
            self.parts.append(uri.rsplit("/", 1)[-1])
            payload = self._checkpoint_payload(state)

            def commit() -> None:
                store.upload_file(path, uri)  # the part is committed here ...
                path.unlink(missing_ok=True)
                write_document(store, checkpoint, payload)  # ... this only summarises it

            self.uploader.submit(commit)
        elif state != "running":
            payload = self._checkpoint_payload(state)
            self.uploader.submit(lambda: write_document(store, checkpoint, payload))
        self._progress(state)

    def _progress(self, state: ShardState = "running") -> None:
        self.last_progress = time.monotonic()
        payload = self._progress_payload(state)
        self.metrics.throughput.set(payload.throughput)
        store, uri = self.out_store, self.layout.progress(self.shard)
        self.uploader.submit(lambda: write_document(store, uri, payload))

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        if self.spool.records and now - self.last_checkpoint >= self.config.checkpoint_seconds:
            self._checkpoint()
        elif now - self.last_progress >= self.config.progress_seconds:
            self._progress()

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
        # late shards): the shard expires its lines as it would have by itself.
        if self._past_deadline():
            return ErrorCode.BATCH_EXPIRED.value
        assert self.stop.code is not None
        return self.stop.code

    def _shutdown(self, items: Iterator[_Runnable | Record], code: str) -> ExitCode:
        started = time.monotonic()
        grace = self.config.grace_seconds
        expired = code == ErrorCode.BATCH_EXPIRED.value
        log.warning("stopping (%s): finishing in-flight requests for up to %.0fs", code, grace / 2)
        if self.engine is not None:
            while self.engine.in_flight() and time.monotonic() - started < grace / 2:
                self._step()
            aborted = self.engine.abort_all()
            for key in aborted:
                custom_id = self.in_flight.pop(key, None)
                if expired:
                    self._record(
                        records.error_record(
                            self.batch_key, key, custom_id, code, records.stop_message(code)
                        )
                    )
            if aborted and not expired:
                log.warning("%d in-flight requests aborted; they stay unfinished", len(aborted))
        if expired:
            self._expire_rest(items, code, started + grace * 0.8)
        else:
            # Not a cancel as far as the shard knows (preemption, pod deletion, node drain
            # all send SIGTERM too): recording the rest as cancelled would make the Job's
            # next pod skip them. Finalize records what is missing if the batch ends here.
            log.warning("lines not finished are left for the next attempt or finalize")
        state: ShardState = "expired" if expired else "cancelled"
        self._checkpoint(state)
        self.uploader.drain()
        return ExitCode.EXPIRED if expired else ExitCode.CANCELLED

    def _expire_rest(
        self, items: Iterator[_Runnable | Record], code: str, hard_stop: float
    ) -> None:
        """Record this shard's remaining lines while the grace period lasts; finalize covers
        whatever is left when it runs out."""
        for item in items:
            if isinstance(item, Record):
                self._record(item)
            else:
                self._record(
                    records.error_record(
                        self.batch_key,
                        item.lineno,
                        item.custom_id,
                        code,
                        records.stop_message(code),
                    )
                )
            if time.monotonic() >= hard_stop:
                log.warning("grace period used up; finalize records the lines not reached")
                break

    # The run -----------------------------------------------------------------------------

    def run(self) -> RunResult:
        _check_input(self.in_store, self.config.input_uri)
        done = self._recover()
        self.tracker = ProgressTracker(
            self.shard,
            self.config.shard_count,
            self.attempt,
            time.time(),
            base_tokens=self.tally.prompt_tokens + self.tally.completion_tokens,
        )
        self.metrics.serve(self.config.metrics_port)
        items = self._items(done)
        try:
            self._progress()
            if self.engine is not None:
                self.engine_info = self.engine.describe()
            code = self._loop(items)
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
            self.uploader.close()
            if self._own_spool_dir:
                shutil.rmtree(self._spool_dir, ignore_errors=True)
        return RunResult(code, self.tally, self.total, self.parts, self.recovered_lines)

    def _has_room(self) -> bool:
        return self.engine is None or self.engine.in_flight() < self.engine.capacity

    def _loop(self, items: Iterator[_Runnable | Record]) -> ExitCode:
        exhausted = False
        while True:
            if self._deadline_passed():
                return self._shutdown(items, self._stop_code())
            while not exhausted and self._has_room():
                item = next(items, None)
                if item is None:
                    exhausted = True
                elif isinstance(item, Record):
                    self._record(item)
                    if self._deadline_passed():
                        break
                else:
                    if self.engine is None:
                        # Loaded on the first request that needs it: a shard with nothing
                        # to run (empty, all invalid, all done before a restart) or already
                        # past its deadline never pays for the model.
                        self._load_engine()
                        assert self.engine is not None
                        self.engine_info = self.engine.describe()
                    self._submit(item)
                    if self._deadline_passed():
                        break
            if self.engine is not None and self.engine.in_flight():
                self._step()
            elif exhausted:
                break
            self._maybe_checkpoint()
        self._checkpoint("done")
        self.uploader.drain()
        return ExitCode.OK


def run_shard(
    config: RunConfig, engine: Any | None = None, stop: StopSignal | None = None
) -> RunResult:
    """Run one shard to completion (or to its deadline / a stop request).

    ``engine`` lets a caller reuse a loaded engine (tests, ``llmbatch run``); otherwise the
    model is resolved and loaded here. Raises PermanentError for what retrying cannot fix.
    """
    if engine is not None and engine.endpoint != config.endpoint:
        raise PermanentError(
            f"the engine serves {engine.endpoint.value}, the batch wants {config.endpoint.value}"
        )
    return ShardRun(config, engine, stop or StopSignal()).run()
