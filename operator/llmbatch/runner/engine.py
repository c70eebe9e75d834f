"""The vLLM engine behind the runner: one request in, one OpenAI response body out.

Generation (chat, completions, responses) feeds vLLM's LLMEngine one request at a time and steps it,
so the runner can keep a bounded window of requests in flight and refill it as each one
finishes: the scheduler always has work, and no request waits for a slow neighbour.
Embeddings have no decode loop, so they run in small groups through ``LLM.embed``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llmbatch.api import responses_api as responses_request
from llmbatch.api.lines import Endpoint
from llmbatch.runner import responses, responses_api
from llmbatch.runner.heap import keep_large_blocks_mapped
from llmbatch.runner.sampling import RequestError, build_sampling_params

log = logging.getLogger(__name__)

# Kernels oneDNN keeps compiled on the CPU (its default is 1,024); see engine_defaults.
ONEDNN_KERNEL_CACHE = "128"


@dataclass(frozen=True)
class Finished:
    key: int
    body: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    key: int
    status_code: int
    message: str


Outcome = Finished | Failed


class Engine(Protocol):
    served_name: str
    endpoint: Endpoint
    capacity: int  # requests worth keeping in flight

    def submit(self, key: int, response_id: str, body: Mapping[str, Any]) -> None:
        """Start a request. Raises RequestError if it cannot run."""

    def step(self) -> list[Outcome]:
        """Advance the engine; return the requests that finished in this step."""

    def in_flight(self) -> int: ...

    def abort_all(self) -> list[int]:
        """Drop every request in flight; return their keys."""

    def describe(self) -> dict[str, Any]:
        """Model and engine settings, for the manifest."""


def engine_defaults(endpoint: Endpoint) -> dict[str, Any]:
    """Settings that suit the platform; a BatchJob's engineArgs override them."""
    from vllm.platforms import current_platform

    defaults: dict[str, Any] = {}
    if current_platform.is_cpu():
        # Without an explicit KV cache size the CPU backend claims most of the node's memory
        # and refuses to start when other processes hold some; a pod sets its own size.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        # oneDNN, torch's CPU kernel library, keeps every kernel it compiles for a new tensor
        # shape, up to 1,024 by default. A shard meets a new batch shape for many thousands of
        # lines, so its resident size rose by about 350 MB over the first 100,000 lines before
        # that cache was full. A smaller cache keeps the shard flat from the first chunk at the
        # same speed (docs/data-plane.md, benchmarks/RESULTS.md). Read at the first kernel.
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_KERNEL_CACHE)
        # CUDA graphs and torch.compile do not pay off on the CPU backend and slow the start.
        defaults.update(enforce_eager=True, dtype="float32")
    if endpoint == Endpoint.EMBEDDINGS:
        defaults["runner"] = "pooling"
    return defaults


def load_engine(
    model_path: Path | str,
    served_name: str,
    endpoint: Endpoint,
    engine_args: Mapping[str, Any] | None = None,
    max_in_flight: int = 0,
    chat_template: str | None = None,
) -> Engine:
    from vllm import LLM
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        # On the CPU the engine core in a second process only competes with this one for the
        # same cores, and costs ~20 s of start-up; in-process it starts in seconds.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # The engine's tensors of a few MB are freed every step: mapped, they go back to the
        # system at once instead of swelling the heap until the next trim (heap.py).
        keep_large_blocks_mapped()
    args = {**engine_defaults(endpoint), **dict(engine_args or {})}
    args.pop("model", None)
    args.pop("served_model_name", None)
    with _flask_proxies_bound():
        llm = LLM(model=str(model_path), served_model_name=served_name, **args)
    if endpoint == Endpoint.EMBEDDINGS:
        return EmbeddingEngine(llm, served_name, args, max_in_flight)
    return GenerationEngine(llm, served_name, endpoint, args, max_in_flight, chat_template)


@contextlib.contextmanager
def _flask_proxies_bound() -> Iterator[None]:
    """Starting in-process, vLLM scans every loaded module's globals with hasattr(), and
    flask's context proxies (flask.request, ...) raise RuntimeError outside a request. When
    flask is loaded in this process (an S3 emulator, a host web app), bind them meanwhile."""
    if "flask" not in sys.modules:
        yield
        return
    import flask

    with flask.Flask("llmbatch-engine-start").test_request_context():
        yield


@dataclass
class _Pending:
    key: int
    response_id: str
    top_logprobs: int
    echo_prompt: str | None
    # A Responses request's settings, repeated in its Response object.
    echo: dict[str, Any] | None = None


def _single_prompt(prompt: Any) -> Any:
    """A completions prompt as vLLM takes it: text, or a TokensPrompt for token ids."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return {"prompt_token_ids": list(prompt)}
    raise RequestError(
        "prompt must be a string or a list of token ids (one prompt per batch request)"
    )


class GenerationEngine:
    def __init__(
        self,
        llm: Any,
        served_name: str,
        endpoint: Endpoint,
        engine_args: Mapping[str, Any],
        max_in_flight: int = 0,
        chat_template: str | None = None,
    ) -> None:
        self.llm = llm
        self.engine = llm.llm_engine
        self.chat_template = chat_template
        self.served_name = served_name
        self.endpoint = endpoint
        self.engine_args = dict(engine_args)
        self.defaults: dict[str, Any] = dict(
            llm.llm_engine.model_config.get_diff_sampling_param() or {}
        )
        max_num_seqs = int(llm.llm_engine.vllm_config.scheduler_config.max_num_seqs)
        # Two batches' worth: the scheduler refills from the waiting queue in the same step
        # a request finishes, while requests for the next step are already rendered.
        self.capacity = max_in_flight or 2 * max_num_seqs
        self._pending: dict[str, _Pending] = {}
        self._tokenizer: Any = None

    def describe(self) -> dict[str, Any]:
        return {
            "servedName": self.served_name,
            "engineArgs": self.engine_args,
            "chatTemplate": self.chat_template is not None,
        }

    def in_flight(self) -> int:
        return len(self._pending)

    def submit(self, key: int, response_id: str, body: Mapping[str, Any]) -> None:
        request = body
        if self.endpoint == Endpoint.RESPONSES:
            # A Responses request runs as the chat request it describes.
            try:
                request = responses_request.to_chat(body)
            except responses_request.BodyProblem as exc:
                raise RequestError(f"{exc.field}: {exc.message}") from exc
        chat = self.endpoint != Endpoint.COMPLETIONS
        params = build_sampling_params(request, self.defaults, chat=chat)
        echo = None
        if self.endpoint == Endpoint.RESPONSES:
            echo = responses_api.echo_fields(body, params.temperature, params.top_p)
        self._pending[str(key)] = self._start(key, response_id, request, params, chat, echo)

    def _start(
        self,
        key: int,
        response_id: str,
        body: Mapping[str, Any],
        params: Any,
        chat: bool,
        echo: dict[str, Any] | None,
    ) -> _Pending:
        """Render one request and add it to the engine."""
        echo_prompt: str | None = None
        try:
            if chat:
                messages = body.get("messages")
                if not isinstance(messages, list) or not messages:
                    raise RequestError("messages must be a non-empty list")
                tools = body.get("tools")
                engine_input = self.llm._preprocess_chat_one(
                    messages,
                    chat_template=self.chat_template,
                    tools=tools if isinstance(tools, list) else None,
                )
                top = body.get("top_logprobs") or 0
            else:
                prompt = _single_prompt(body.get("prompt"))
                engine_input = self.llm._preprocess_cmpl_one(prompt)
                top = body.get("logprobs") or 0
                if body.get("echo"):
                    echo_prompt = prompt if isinstance(prompt, str) else self._decode(prompt)
            self.engine.add_request(str(key), engine_input, params)
        except RequestError:
            raise
        except Exception as exc:  # the request's own fault: template, length, parameters
            raise RequestError(_clean_message(exc)) from exc
        return _Pending(key, response_id, int(top), echo_prompt, echo)

    def _decode(self, prompt: Mapping[str, Any]) -> str:
        if self._tokenizer is None:
            self._tokenizer = self.llm.get_tokenizer()
        return str(self._tokenizer.decode(prompt["prompt_token_ids"]))

    def step(self) -> list[Outcome]:
        finished: list[Outcome] = []
        for output in self.engine.step():
            if not output.finished:
                continue
            pending = self._pending.pop(output.request_id, None)
            if pending is None:
                continue
            prompt_tokens, completion_tokens = responses.count_tokens(output)
            body = self._answer(pending, output)
            finished.append(Finished(pending.key, body, prompt_tokens, completion_tokens))
        return finished

    def _answer(self, pending: _Pending, output: Any) -> dict[str, Any]:
        if pending.echo is not None:
            return responses_api.response_body(
                pending.response_id, self.served_name, output, pending.echo
            )
        if self.endpoint == Endpoint.CHAT_COMPLETIONS:
            return responses.chat_body(
                pending.response_id, self.served_name, output, pending.top_logprobs
            )
        return responses.completion_body(
            pending.response_id,
            self.served_name,
            output,
            pending.top_logprobs,
            pending.echo_prompt,
        )

    def abort_all(self) -> list[int]:
        ids = list(self._pending)
        if ids:
            self.engine.abort_request(ids)
            # Drain what the abort produced so the engine is clean for its next user.
            while self.engine.has_unfinished_requests():
                self.engine.step()
        keys = [p.key for p in self._pending.values()]
        self._pending.clear()
        return keys


def _clean_message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + "..."


@dataclass
class _EmbeddingJob:
    key: int
    inputs: list[Any]
    encoding: str
    dimensions: int | None


def _embedding_inputs(body: Mapping[str, Any]) -> list[Any]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [{"prompt_token_ids": list(value)}]
        if all(isinstance(v, list) and v for v in value):
            return [{"prompt_token_ids": list(v)} for v in value]
    raise RequestError("input must be a string, a list of strings, or token id lists")


class EmbeddingEngine:
    # Prompts per LLM.embed call: big enough to batch, small enough to checkpoint often.
    group_size = 64

    def __init__(
        self, llm: Any, served_name: str, engine_args: Mapping[str, Any], max_in_flight: int = 0
    ) -> None:
        self.llm = llm
        self.served_name = served_name
        self.endpoint = Endpoint.EMBEDDINGS
        self.engine_args = dict(engine_args)
        self.capacity = max_in_flight or self.group_size
        self._queue: deque[_EmbeddingJob] = deque()

    def describe(self) -> dict[str, Any]:
        return {"servedName": self.served_name, "engineArgs": self.engine_args}

    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, key: int, response_id: str, body: Mapping[str, Any]) -> None:
        inputs = _embedding_inputs(body)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise RequestError("encoding_format must be 'float' or 'base64'")
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int)
        ):
            raise RequestError("dimensions must be an integer")
        self._queue.append(_EmbeddingJob(key, inputs, str(encoding), dimensions))

    def _embed(self, jobs: list[_EmbeddingJob]) -> list[Outcome]:
        from vllm import PoolingParams

        prompts: list[Any] = []
        params: list[Any] = []
        for job in jobs:
            for item in job.inputs:
                prompts.append(item)
                params.append(PoolingParams(dimensions=job.dimensions))
        outputs = self.llm.embed(prompts, pooling_params=params, use_tqdm=False)
        results: list[Outcome] = []
        at = 0
        for job in jobs:
            mine = outputs[at : at + len(job.inputs)]
            at += len(job.inputs)
            tokens = sum(len(o.prompt_token_ids or ()) for o in mine)
            body = responses.embedding_body(
                self.served_name, [o.outputs.embedding for o in mine], tokens, job.encoding
            )
            results.append(Finished(job.key, body, tokens, 0))
        return results

    def step(self) -> list[Outcome]:
        jobs: list[_EmbeddingJob] = []
        count = 0
        while self._queue and count < self.group_size:
            job = self._queue.popleft()
            jobs.append(job)
            count += len(job.inputs)
        if not jobs:
            return []
        try:
            return self._embed(jobs)
        except Exception:
            log.info("an embedding group failed; retrying its requests one by one")
        # Something in the group was refused: run them one by one to find which.
        results: list[Outcome] = []
        for job in jobs:
            try:
                results.extend(self._embed([job]))
            except Exception as exc:
                results.append(Failed(job.key, 400, _clean_message(exc)))
        return results

    def abort_all(self) -> list[int]:
        keys = [job.key for job in self._queue]
        self._queue.clear()
        return keys
