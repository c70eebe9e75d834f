"""Backend ray: the runner's engine, served by Ray Data's LLM API instead of a vLLM engine the
runner drives itself.

``RayEngine`` has the runner's Engine face (submit, step, in_flight, abort_all, describe), so
``run.py`` claims chunks, commits one part per chunk, marks leases done, writes progress and
handles SIGTERM and the deadline exactly as for backend vllm: one implementation of every
guarantee. What differs is inside: submitted requests are buffered; when no dataset is
running, the buffer (the first chunk; later, the chunks read while the previous dataset ran, up
to ``capacity``) becomes one Ray dataset through
``build_processor`` (chat template, tokenize, vLLM engine with concurrency GPUs / tensor
parallel size; vLLM detokenizes), and its rows are handed back as they stream out. A row vLLM
refused or failed comes back with ``__inference_error__`` (``should_continue_on_error``) and
becomes the line's error record.

Requests are checked with the same rules as backend vllm (``sampling.build_sampling_params``
with the model's generation defaults) before they reach Ray, so a bad request fails the same
way. Ray Data returns one completion per row and no finish reason or logprobs: ``n`` above 1,
``logprobs`` and ``logit_bias`` are refused per line, and the finish reason is "length" when
the completion reached its token budget, else "stop".
"""

from __future__ import annotations

import json
import logging
import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from llmbatch.api.lines import Endpoint
from llmbatch.runner import responses
from llmbatch.runner.engine import Failed, Finished, Outcome
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.ray_pipeline import ERROR_COLUMN, DatasetRun, Ended, RaySettings
from llmbatch.runner.run import RunConfig, StopSignal
from llmbatch.runner.sampling import RequestError, build_sampling_params

log = logging.getLogger(__name__)

# How long one step waits for the first finished row before it hands control back to the
# shard loop (which checks the stop signal and writes progress).
STEP_WAIT = 0.5
# The SamplingParams arguments Ray's vLLM stage receives (it builds SamplingParams(**row)).
_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "max_tokens",
    "min_tokens",
    "ignore_eos",
)
# The model's generation_config.json fields vLLM takes as request defaults.
_GENERATION_DEFAULTS = (
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
)


def generation_defaults(model_path: Path, engine_args: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling defaults vLLM reads from the model (``generation_config: auto``), so a
    request without temperature samples the same way under both backends."""
    if engine_args.get("generation_config", "auto") == "vllm":
        return {}
    path = model_path / "generation_config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    return {name: config[name] for name in _GENERATION_DEFAULTS if config.get(name) is not None}


def max_model_len(model_path: Path, engine_args: Mapping[str, Any]) -> int | None:
    if engine_args.get("max_model_len"):
        return int(engine_args["max_model_len"])
    path = model_path / "config.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("max_position_embeddings")
    return int(value) if value else None


def sampling_arguments(params: Any) -> dict[str, Any]:
    """SamplingParams as the keyword arguments Ray's vLLM stage rebuilds them from; RequestError
    for what one Ray row cannot carry back."""
    if params.n != 1:
        raise RequestError("n above 1 is not supported by backend ray (one completion per row)")
    if params.logprobs is not None:
        raise RequestError("logprobs are not supported by backend ray")
    if params.logit_bias:
        raise RequestError("logit_bias is not supported by backend ray")
    arguments = {name: getattr(params, name) for name in _SAMPLING_FIELDS}
    if arguments["stop"] == []:
        arguments["stop"] = None
    structured = params.structured_outputs
    if structured is not None:
        fields = ("json", "regex", "choice", "grammar", "json_object")
        arguments["structured_outputs"] = {
            name: getattr(structured, name)
            for name in fields
            if getattr(structured, name, None) is not None
        }
    return arguments


@dataclass(frozen=True)
class Pending:
    key: int
    response_id: str
    max_tokens: int | None


def finish_reason(row: Mapping[str, Any], pending: Pending, context: int | None) -> str:
    generated = len(row.get("generated_tokens") or ())
    prompt = int(row.get("num_input_tokens") or 0)
    if pending.max_tokens is not None and generated >= pending.max_tokens:
        return "length"
    if context is not None and prompt + generated >= context:
        return "length"
    return "stop"


def outcome(
    row: Mapping[str, Any], pending: Pending, served_name: str, context: int | None
) -> Outcome:
    """One finished Ray row as the engine's outcome: a chat.completion body, or the error."""
    error = row.get(ERROR_COLUMN)
    if error:
        return Failed(pending.key, 400, str(error))
    choice = SimpleNamespace(
        index=0,
        text=row.get("generated_text") or "",
        token_ids=list(row.get("generated_tokens") or ()),
        logprobs=None,
        finish_reason=finish_reason(row, pending, context),
    )
    output = SimpleNamespace(
        prompt_token_ids=list(row.get("prompt_token_ids") or ()), outputs=[choice]
    )
    body = responses.chat_body(pending.response_id, served_name, output, 0)
    prompt_tokens, completion_tokens = responses.count_tokens(output)
    return Finished(pending.key, body, prompt_tokens, completion_tokens)


class RayEngine:
    """The Engine face over Ray Data LLM. Ray starts and the processor is built on the first
    request, so a shard with nothing to run never pays for them."""

    endpoint = Endpoint.CHAT_COMPLETIONS

    def __init__(
        self,
        model_path: Callable[[], Path],
        served_name: str,
        settings: RaySettings,
        stopping: Callable[[], bool],
        chat_template: str | None = None,
        capacity: int = 1000,
    ) -> None:
        self._model_path = model_path
        self.served_name = served_name
        self.settings = settings
        self.chat_template = chat_template
        # Requests the shard keeps here: the buffer becomes one dataset when the previous one
        # is done, and each dataset pays an engine start, so a few chunks' worth.
        self.capacity = capacity
        self._stopping = stopping
        self._processor: Any = None
        self._defaults: dict[str, Any] = {}
        self._context: int | None = None
        self._buffer: list[dict[str, Any]] = []
        self._pending: dict[int, Pending] = {}
        self._run: DatasetRun | None = None
        self._running: set[int] = set()
        # Seconds spent starting Ray and building the processor, for the benchmark.
        self.start_seconds = 0.0
        self.datasets = 0
        self._launched = 0.0
        self._first_row: float | None = None
        self._dataset_rows = 0

    def describe(self) -> dict[str, Any]:
        return {
            "servedName": self.served_name,
            "engineArgs": dict(self.settings.engine_kwargs),
            "chatTemplate": self.chat_template is not None,
            "backend": "ray",
        }

    def _ensure_started(self) -> None:
        if self._processor is not None:
            return
        from llmbatch.runner import ray_pipeline

        started = time.monotonic()
        path = self._model_path()
        engine_args = self.settings.engine_kwargs
        self._defaults = generation_defaults(path, engine_args)
        self._context = max_model_len(path, engine_args)
        try:
            ray_pipeline.start_ray(self.settings)
            self._processor = ray_pipeline.build_processor(
                str(path), self.settings, self.chat_template
            )
        except Exception as exc:
            raise PermanentError(
                f"Ray Data cannot serve model {path}: {type(exc).__name__}: {exc}"
            ) from exc
        self.start_seconds = time.monotonic() - started
        # One line the benchmark (benchmarks/bench_ray.py) reads: where the start-up went.
        log.info("ray started in %.2f s", self.start_seconds)

    def submit(self, key: int, response_id: str, body: Mapping[str, Any]) -> None:
        self._ensure_started()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("messages must be a non-empty list")
        params = build_sampling_params(body, self._defaults, chat=True)
        arguments = sampling_arguments(params)
        self._buffer.append(
            {
                "key": key,
                "request": json.dumps({"messages": messages}),
                "sampling": json.dumps(arguments),
            }
        )
        self._pending[key] = Pending(key, response_id, params.max_tokens)

    def in_flight(self) -> int:
        # Once the shard is stopping, buffered rows never start: only the running dataset
        # counts, so the shutdown waits for it alone and abort_all hands the rest back.
        if self._stopping():
            return len(self._running)
        return len(self._pending)

    def _launch(self) -> None:
        rows, self._buffer = self._buffer, []
        self._running = {row["key"] for row in rows}
        self._dataset_rows = len(rows)
        self.datasets += 1
        self._run = DatasetRun(self._processor, rows)
        self._launched = time.monotonic()
        self._first_row = None

    def step(self) -> list[Outcome]:
        if self._run is None:
            if not self._buffer or self._stopping():
                return []
            self._launch()
        assert self._run is not None
        finished: list[Outcome] = []
        try:
            item = self._run.results.get(timeout=STEP_WAIT)
            while True:
                if isinstance(item, Ended):
                    self._ended(item)
                    break
                finished.extend(self._take(item))
                item = self._run.results.get_nowait()
        except queue.Empty:
            pass
        return finished

    def _take(self, row: Mapping[str, Any]) -> list[Outcome]:
        if self._first_row is None:
            self._first_row = time.monotonic() - self._launched
        key = int(row["key"])
        pending = self._pending.pop(key, None)
        self._running.discard(key)
        if not self._running:
            # The shard may stop stepping once the last row is in (the end marker is then
            # never read), so the dataset is reported done here.
            self._log_dataset()
        if pending is None:
            return []
        return [outcome(row, pending, self.served_name, self._context)]

    def _log_dataset(self) -> None:
        # The first row waits for the dataset's actors (the vLLM engine starts per dataset).
        log.info(
            "ray dataset done: %d rows in %.2f s, first row after %.2f s",
            self._dataset_rows,
            time.monotonic() - self._launched,
            self._first_row or 0.0,
        )

    def _ended(self, end: Ended) -> None:
        self._run = None
        lost, self._running = self._running, set()
        if end.error is not None:
            raise RuntimeError(
                f"the Ray Data pipeline failed: {type(end.error).__name__}: {end.error}"
            ) from end.error
        if lost:
            # A dataset that ends without some rows would leave them in flight forever.
            raise RuntimeError(f"the Ray Data pipeline returned no row for {len(lost)} requests")

    def abort_all(self) -> list[int]:
        if self._run is not None:
            self._run.abandon()
            self._run = None
        keys = list(self._pending)
        self._pending.clear()
        self._buffer.clear()
        self._running.clear()
        return keys


def ray_engine(
    config: RunConfig, address: str | None, gpus: int, batch_size: int, stop: StopSignal
) -> RayEngine:
    """The engine ``llmbatch-runner run --backend ray`` hands to the shard loop."""
    if config.endpoint != Endpoint.CHAT_COMPLETIONS:
        raise PermanentError(
            f"backend ray serves {Endpoint.CHAT_COMPLETIONS.value} only, not "
            f"{config.endpoint.value}"
        )

    def model_path() -> Path:
        from llmbatch.runner.engine import engine_defaults
        from llmbatch.runner.model_source import resolve_model

        # The platform's defaults (eager, float32 and a KV cache size on the CPU) as for
        # backend vllm; read when Ray starts, so the engine actors inherit them.
        settings.engine_kwargs.update({**engine_defaults(config.endpoint), **config.engine_args})
        return resolve_model(config.model_source, config.settings, config.model_cache_dir)

    settings = RaySettings(address=address, gpus=max(gpus, 1), batch_size=batch_size)
    return RayEngine(
        model_path,
        config.served_model_name,
        settings,
        lambda: stop.code is not None,
        config.chat_template,
        capacity=config.max_in_flight or 1000,
    )
