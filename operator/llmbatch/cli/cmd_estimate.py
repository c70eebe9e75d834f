"""``llmbatch estimate FILE``: how many tokens a batch will use and what it will cost.

The counts follow ``llmbatch.api.tokens``, the gateway's rule too: prompt tokens with the
model's own tokenizer (and chat template) when a local model directory is given, otherwise a
heuristic estimate, labelled as such. Completion tokens are an upper bound: each request's
max_tokens, or an assumed number for requests that set none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from llmbatch.cli.options import FORMAT_OPTION, JSONL_FILE, OutputFormat, fail, print_json

if TYPE_CHECKING:
    from llmbatch.api.tokens import PromptCounter

EPILOG = """\
Examples:

  llmbatch estimate requests.jsonl --price-in 0.15 --price-out 0.60

  llmbatch estimate requests.jsonl --model-source /models/qwen2.5-0.5b-instruct -o json

Prices are per million tokens, as in the gateway's config.
"""

EXACT_HINT = "pass --model-source DIR for exact counts"


@dataclass
class Estimate:
    method: str  # how prompt tokens were counted
    requests: int = 0
    invalid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    assumed_completion: int = 0  # requests without max_tokens

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


def estimate_file(path: Path, counter: PromptCounter, method: str, assumed: int) -> Estimate:
    from llmbatch.api.lines import FileValidator, LineError
    from llmbatch.api.tokens import completion_budget

    validator = FileValidator()
    result = Estimate(method=method)
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
            result.prompt_tokens += counter.count(body, endpoint)
            budget, was_assumed = completion_budget(body, endpoint, assumed)
            result.completion_tokens += budget
            result.assumed_completion += int(was_assumed)
    return result


def _counter(model_source: str | None) -> tuple[PromptCounter, str]:
    """The prompt counter and how its counts are labelled."""
    from llmbatch.api import tokens

    heuristic = f"{tokens.HEURISTIC}; {EXACT_HINT}"
    if model_source is None:
        return tokens.PromptCounter(), heuristic
    model_dir = tokens.tokenizer_dir(model_source)
    if model_dir is None:
        typer.echo(
            f"note: {model_source} is not a local model directory with a tokenizer; "
            "using the heuristic",
            err=True,
        )
        return tokens.PromptCounter(), heuristic
    try:
        counter = tokens.load_counter(model_dir)
    except (OSError, ValueError) as exc:
        raise fail(f"could not load the tokenizer from {model_dir}: {exc}") from exc
    return counter, f"tokenizer of {model_dir}"


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
    counter, method = _counter(model_source)
    result = estimate_file(file, counter, method, assume_output_tokens)
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
