"""Runner test fixtures: one in-process vLLM engine on the tiny model, shared by the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.lines import Endpoint

# Small enough that an over-long prompt is cheap to build; large enough for every test prompt.
TINY_ENGINE_ARGS: dict[str, Any] = {"max_model_len": 512, "seed": 0}


@pytest.fixture(scope="session")
def chat_engine(tiny_model: Path, tiny_served_name: str) -> Iterator[Any]:
    """The tiny model in vLLM, in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), serving
    chat completions; tests that need completions wrap the same LLM (see completion_engine)."""
    from llmbatch.runner.engine import load_engine

    engine = load_engine(tiny_model, tiny_served_name, Endpoint.CHAT_COMPLETIONS, TINY_ENGINE_ARGS)
    yield engine


@pytest.fixture(scope="session")
def completion_engine(chat_engine: Any) -> Any:
    from llmbatch.runner.engine import GenerationEngine

    return GenerationEngine(
        chat_engine.llm, chat_engine.served_name, Endpoint.COMPLETIONS, chat_engine.engine_args
    )
