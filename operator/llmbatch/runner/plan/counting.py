"""Token counts of one runnable line for the plan: prompt tokens with the model's tokenizer
and chat template when the plan step can read them from the model source (a local directory,
or the tokenizer files alone of an ``s3://`` or locally cached ``hf://`` model), else the
documented estimate of ``api.tokens``; and the completion budget.

A request without max_tokens (or max_completion_tokens) may generate up to what the model's
context leaves after its prompt (``max_model_len`` of the engine arguments); without a known
context it counts 0, and the summary's max_completion_tokens is then a lower bound.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmbatch.api.plan import TokenCounter
from llmbatch.api.tokens import PromptCounter, completion_budget, load_counter
from llmbatch.models.tokenizer_source import TokenizerNotFound, tokenizer_directory
from llmbatch.storage import StorageSettings

log = logging.getLogger(__name__)


def prompt_counter(
    model_source: str, chat_template: str | None, settings: StorageSettings | None = None
) -> tuple[PromptCounter, TokenCounter]:
    try:
        directory = tokenizer_directory(model_source, settings)
    except TokenizerNotFound as exc:
        log.info("prompt tokens are estimated: %s", exc)
        return PromptCounter(), "estimate"
    try:
        return load_counter(directory, chat_template), "tokenizer"
    except (ImportError, OSError, ValueError) as exc:
        log.warning("tokenizer of %s not usable, prompt tokens are estimated: %s", directory, exc)
        return PromptCounter(), "estimate"


@dataclass(frozen=True)
class LineTokens:
    counter: PromptCounter
    endpoint: str
    max_model_len: int | None = None

    def count(self, bodies: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
        """(prompt tokens, most completion tokens) of each request body."""
        prompts = self.counter.count_many(bodies, self.endpoint)
        return [
            self._with_budget(body, prompt) for body, prompt in zip(bodies, prompts, strict=True)
        ]

    def _with_budget(self, body: Mapping[str, Any], prompt: int) -> tuple[int, int]:
        left = max(0, self.max_model_len - prompt) if self.max_model_len else 0
        return prompt, completion_budget(body, self.endpoint, left)[0]
