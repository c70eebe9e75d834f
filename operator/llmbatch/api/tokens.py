"""Token estimates of batch requests: the one rule behind the gateway's
``/v1/batches/cost-estimate`` and ``llmbatch estimate``, so both give the same numbers for the
same file.

Prompt tokens, with the model's own tokenizer (a local model directory), are what vLLM sees: a
chat request is rendered through the chat template (with the generation prompt) and encoded
without special tokens, which the template already writes; a completion prompt or an embedding
input is encoded as vLLM encodes it, with them. Token-id prompts count their ids.

Without a tokenizer the count is a heuristic, and callers say so: each text counts
ceil(UTF-8 bytes / 4) tokens (about what BPE tokenizers give on English text, and not too low
on scripts whose characters take several bytes), and a chat message adds 4 tokens for the role
markers and separators a template writes. Only the text parts of multi-part content count.
A Responses request (``/v1/responses``) counts as the chat request it runs as: its
instructions as a system message, then its input messages.

Completion tokens are an upper bound: a request's max_completion_tokens (or max_tokens, or a
Responses request's max_output_tokens) times its number of choices ``n``; a request that sets
none of them gets the caller's fallback budget.

transformers is imported only when a tokenizer is loaded: it is heavy and optional.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmbatch.api import responses_api
from llmbatch.api.lines import Endpoint

BYTES_PER_TOKEN = 4
CHAT_MESSAGE_TOKENS = 4
HEURISTIC = "heuristic (~4 bytes of text per token, +4 per chat message)"

_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def _text_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN)


def _message_texts(message: object) -> list[str]:
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):  # content parts: the text ones count
        return [str(part.get("text", "")) for part in content if isinstance(part, Mapping)]
    return []


def _with_text_content(message: object) -> object:
    """A message whose content parts are joined into one text, as vLLM hands them to a chat
    template (templates expect a string)."""
    if isinstance(message, Mapping) and isinstance(message.get("content"), list):
        return {**message, "content": "\n".join(_message_texts(message))}
    return message


def _prompt_value(body: Mapping[str, Any]) -> object:
    """A completion's ``prompt`` or an embedding's ``input``."""
    prompt = body.get("prompt")
    return prompt if prompt is not None else body.get("input")


def _prompt_parts(value: object) -> tuple[list[str], int]:
    """(texts, token ids) of a prompt: a string, token ids, or a list of either."""
    if isinstance(value, str):
        return [value], 0
    if not isinstance(value, list):
        return [], 0
    if all(isinstance(item, int) for item in value):
        return [], len(value)
    texts = [item for item in value if isinstance(item, str)]
    ids = sum(len(item) for item in value if isinstance(item, list))
    return texts, ids


def prompt_texts(body: Mapping[str, Any], endpoint: str | None = None) -> list[str]:
    """The texts of a request's prompt, in order: each chat message's text parts (a Responses
    request's as the chat it runs as), or a completion's prompt (an embedding's input)
    strings; token ids have no text."""
    messages = _chat_messages(body, endpoint)
    if messages is not None:
        return [text for message in messages for text in _message_texts(message)]
    return _prompt_parts(_prompt_value(body))[0]


def _looks_like_responses(body: Mapping[str, Any]) -> bool:
    """A Responses body when the endpoint is not known: fields only it has, or message items
    as input (an embedding's input is never objects)."""
    value = body.get("input")
    items = isinstance(value, list) and any(isinstance(item, Mapping) for item in value)
    return items or any(key in body for key in ("instructions", "max_output_tokens", "text"))


def _chat_messages(body: Mapping[str, Any], endpoint: str | None) -> list[Any] | None:
    """The messages a request renders through the chat template, or None for a prompt."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return messages
    if endpoint == Endpoint.RESPONSES or (endpoint is None and _looks_like_responses(body)):
        try:
            return list(responses_api.messages(body))
        except responses_api.BodyProblem:
            return []  # the line rules refuse it; it runs nothing
    return None


def heuristic_tokens(body: Mapping[str, Any], endpoint: str | None = None) -> int:
    """Prompt tokens of one request body without a tokenizer (see the module doc). Without
    ``endpoint`` a Responses body is told by its fields."""
    messages = _chat_messages(body, endpoint)
    if messages is not None:
        texts = [text for message in messages for text in _message_texts(message)]
        return sum(map(_text_tokens, texts)) + CHAT_MESSAGE_TOKENS * len(messages)
    texts, ids = _prompt_parts(_prompt_value(body))
    return sum(map(_text_tokens, texts)) + ids


class PromptCounter:
    """Counts prompt tokens with a Hugging Face tokenizer, or with the heuristic when none."""

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    def count(self, body: Mapping[str, Any], endpoint: str | None = None) -> int:
        if self.tokenizer is None:
            return heuristic_tokens(body, endpoint)
        messages = _chat_messages(body, endpoint)
        if messages is not None:
            return self._chat_tokens(messages)
        texts, ids = _prompt_parts(_prompt_value(body))
        return sum(len(self.tokenizer.encode(text)) for text in texts) + ids

    def count_many(
        self, bodies: Sequence[Mapping[str, Any]], endpoint: str | None = None
    ) -> list[int]:
        """``count`` of each body. With a tokenizer, the rendered chat prompts are encoded in
        one batch, which a fast tokenizer spreads over the CPU's cores."""
        if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
            return [self.count(body, endpoint) for body in bodies]
        counts = [0] * len(bodies)
        rendered: list[str] = []
        places: list[int] = []
        for place, body in enumerate(bodies):
            messages = _chat_messages(body, endpoint)
            if messages is None:
                counts[place] = self.count(body, endpoint)
            else:
                rendered.append(self._render(messages))
                places.append(place)
        if rendered:
            encoded = self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
            for place, ids in zip(places, encoded, strict=True):
                counts[place] = len(ids)
        return counts

    def _render(self, messages: list[Any]) -> str:
        text = self.tokenizer.apply_chat_template(
            [_with_text_content(m) for m in messages], tokenize=False, add_generation_prompt=True
        )
        return str(text)

    def _chat_tokens(self, messages: list[Any]) -> int:
        if getattr(self.tokenizer, "chat_template", None):
            return len(self.tokenizer.encode(self._render(messages), add_special_tokens=False))
        # No template: vLLM would refuse the request; the message texts are the best guess.
        texts = [text for message in messages for text in _message_texts(message)]
        return sum(len(self.tokenizer.encode(text, add_special_tokens=False)) for text in texts)


def tokenizer_dir(source: str | None) -> Path | None:
    """The directory of a model (or tokenizer) source that is on this machine and holds a
    tokenizer, else None: ``/path``, ``file:///path``; never a remote ``hf://`` or ``s3://``."""
    if not source or ("://" in source and not source.startswith("file://")):
        return None
    path = Path(source.removeprefix("file://"))
    return path if any((path / name).is_file() for name in _TOKENIZER_FILES) else None


def load_counter(model_dir: Path, chat_template: str | None = None) -> PromptCounter:
    """A counter with the tokenizer in ``model_dir`` (and ``chat_template`` instead of its own
    when given). Raises ImportError without transformers, OSError or ValueError when the
    tokenizer cannot be read."""
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir))
    if chat_template:
        tokenizer.chat_template = chat_template
    return PromptCounter(tokenizer)


def completion_budget(body: Mapping[str, Any], endpoint: str, fallback: int) -> tuple[int, bool]:
    """(upper bound of completion tokens, whether the fallback was used): embeddings generate
    nothing; otherwise max_completion_tokens or max_tokens, else ``fallback``, per choice."""
    if endpoint == Endpoint.EMBEDDINGS:
        return 0, False
    n = body.get("n")
    choices = n if isinstance(n, int) and n > 0 else 1
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value >= 0:
            return value * choices, False
    return fallback * choices, True
