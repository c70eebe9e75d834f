"""``llmbatch estimate FILE``: how many tokens a batch will use and what it will cost.

Prompt tokens are counted with the model's own tokenizer (and chat template) when a local
model directory is given; otherwise a heuristic estimate is made and labelled as such.
Completion tokens are an upper bound: each request's max_tokens, or an assumed number for
requests that set none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from llmbatch.cli.options import FORMAT_OPTION, JSONL_FILE, OutputFormat, fail, print_json

EPILOG = """\
Examples:

  llmbatch estimate requests.jsonl --price-in 0.15 --price-out 0.60

  llmbatch estimate requests.jsonl --model-source /models/qwen2.5-0.5b-instruct -o json

Prices are per million tokens, as in the gateway's config.
"""

# Roughly what BPE tokenizers give on English text; only used without a tokenizer.
CHARS_PER_TOKEN = 4.0
# Role markers and separators a chat template adds per message.
CHAT_OVERHEAD_TOKENS = 4
HEURISTIC_LABEL = "heuristic (~4 characters per token); pass --model-source DIR for exact counts"

Counter = Callable[[dict[str, Any], str], int]


@dataclass
class Estimate:
    requests: int = 0
    invalid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    assumed_completion: int = 0  # requests without max_tokens
    method: str = HEURISTIC_LABEL

    def cost(self, price_in: float | None, price_out: float | None) -> float | None:
        if price_in is None and price_out is None:
            return None
        return (
            self.prompt_tokens * (price_in or 0.0) + self.completion_tokens * (price_out or 0.0)
        ) / 1_000_000

    def as_dict(self, price_in: float | None, price_out: float | None) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "invalid": self.invalid,
            "promptTokens": self.prompt_tokens,
            "completionTokensUpperBound": self.completion_tokens,
            "requestsWithoutMaxTokens": self.assumed_completion,
            "promptTokenMethod": self.method,
            "priceInPerMillion": price_in,
            "priceOutPerMillion": price_out,
            "cost": self.cost(price_in, price_out),
        }


def _texts(body: dict[str, Any], endpoint: str) -> list[str]:
    """The text a request feeds the model, for the heuristic."""
    if endpoint == "/v1/chat/completions":
        texts: list[str] = []
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):  # content parts: count the text ones
                texts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
        return texts
    key = "prompt" if endpoint == "/v1/completions" else "input"
    value = body.get(key)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def heuristic_tokens(body: dict[str, Any], endpoint: str) -> int:
    texts = _texts(body, endpoint)
    tokens = sum(math.ceil(len(text) / CHARS_PER_TOKEN) for text in texts)
    if endpoint == "/v1/chat/completions":
        tokens += CHAT_OVERHEAD_TOKENS * len(body.get("messages") or [])
    value = body.get("prompt") or body.get("input")
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        tokens += len(value)  # already token ids
    return tokens


def tokenizer_counter(model_dir: Path) -> Counter:
    """Exact prompt token counts with the model's tokenizer and chat template."""
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir))

    def count(body: dict[str, Any], endpoint: str) -> int:
        if endpoint == "/v1/chat/completions" and getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                body.get("messages") or [], tokenize=False, add_generation_prompt=True
            )
            return len(tokenizer(str(text), add_special_tokens=False)["input_ids"])
        value = body.get("prompt") or body.get("input")
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            return len(value)
        return sum(len(tokenizer(t)["input_ids"]) for t in _texts(body, endpoint))

    return count


def completion_budget(body: dict[str, Any], endpoint: str, assumed: int) -> tuple[int, bool]:
    """(upper bound of completion tokens, whether it was assumed)."""
    if endpoint == "/v1/embeddings":
        return 0, False
    n = body.get("n")
    choices = n if isinstance(n, int) and n > 0 else 1
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value >= 0:
            return value * choices, False
    return assumed * choices, True


def estimate_file(path: Path, count: Counter | None, method: str, assumed: int) -> Estimate:
    from llmbatch.api.lines import FileValidator, LineError

    validator = FileValidator()
    result = Estimate(method=method)
    counter = count or heuristic_tokens
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            checked = validator.check(lineno, raw)
            if checked is None:
                continue
            if isinstance(checked, LineError):
                result.invalid += 1
                continue
            endpoint = checked.request.url.value
            body = checked.request.body
            result.requests += 1
            result.prompt_tokens += counter(body, endpoint)
            budget, was_assumed = completion_budget(body, endpoint, assumed)
            result.completion_tokens += budget
            result.assumed_completion += int(was_assumed)
    return result


def local_model_dir(source: str) -> Path | None:
    """The directory of a model source that is on this machine, else None."""
    path = Path(source.removeprefix("file://"))
    if "://" in source and not source.startswith("file://"):
        return None
    return (
        path
        if (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file()
        else None
    )


def estimate(
    file: Path = JSONL_FILE,
    model_source: str | None = typer.Option(
        None, "--model-source", help="A local model directory: count with its tokenizer."
    ),
    price_in: float | None = typer.Option(
        None, "--price-in", min=0, help="Price per million prompt tokens."
    ),
    price_out: float | None = typer.Option(
        None, "--price-out", min=0, help="Price per million completion tokens."
    ),
    assume_output_tokens: int = typer.Option(
        256,
        "--assume-output-tokens",
        min=0,
        help="Completion tokens assumed for a request without max_tokens.",
    ),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Estimate a batch's tokens (prompt and completion upper bound) and cost."""
    count: Counter | None = None
    method = HEURISTIC_LABEL
    if model_source is not None:
        model_dir = local_model_dir(model_source)
        if model_dir is None:
            typer.echo(
                f"note: {model_source} is not a local model directory with a tokenizer; "
                "using the heuristic",
                err=True,
            )
        else:
            try:
                count = tokenizer_counter(model_dir)
            except (OSError, ValueError) as exc:
                raise fail(f"could not load the tokenizer from {model_dir}: {exc}") from exc
            method = f"tokenizer of {model_dir}"
    result = estimate_file(file, count, method, assume_output_tokens)
    if output_format is OutputFormat.JSON:
        print_json({"file": str(file), **result.as_dict(price_in, price_out)})
        return
    typer.echo(
        f"requests:          {result.requests}"
        + (f" ({result.invalid} invalid lines skipped)" if result.invalid else "")
    )
    typer.echo(f"prompt tokens:     {result.prompt_tokens}  [{result.method}]")
    note = (
        f"  [{result.assumed_completion} requests without max_tokens counted as "
        f"{assume_output_tokens}]"
        if result.assumed_completion
        else ""
    )
    typer.echo(f"completion tokens: <= {result.completion_tokens}{note}")
    cost = result.cost(price_in, price_out)
    if cost is not None:
        typer.echo(
            f"cost:              <= {cost:.4f} (prices per million tokens: "
            f"in {price_in or 0}, out {price_out or 0})"
        )
