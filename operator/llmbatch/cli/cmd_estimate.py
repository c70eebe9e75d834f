"""``llmbatch estimate FILE``: a quote for a batch before it runs: its tokens, the GPU time
and wall time it should take, and what it costs next to OpenAI's batch price.

Prompt tokens follow ``llmbatch.api.tokens``, the rule of the plan step and the gateway: with
the model's own tokenizer and chat template, found from the model the user already named
(``--model-source``, ``--batchjob`` or ``--config`` with ``--model``; see
``llmbatch.cli.model_choice``), they are exactly the prompt tokens the runner reports;
otherwise a heuristic, labelled as such. Completion tokens are an upper bound: each request's
max_tokens, or an assumed number for requests that set none. Time and cost: ``cli.quote``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from llmbatch.cli.model_choice import (
    BATCHJOB_OPTION,
    CONFIG_OPTION,
    MODEL_OPTION,
    MODEL_SOURCE_OPTION,
    choose_model,
    load_counter,
)
from llmbatch.cli.options import FORMAT_OPTION, JSONL_FILE, OutputFormat, fail, print_json
from llmbatch.cli.quote import (
    DEFAULT_OPENAI_MODEL,
    OPENAI_BATCH_PRICES,
    QuoteError,
    Rate,
    quote,
    rate_from_manifests,
)

if TYPE_CHECKING:
    from llmbatch.api.tokens import PromptCounter

EPILOG = """\
Examples:

  llmbatch estimate requests.jsonl --batchjob batchjob.yaml --rate 900 --parallelism 4

  llmbatch estimate requests.jsonl --config gateway.yaml --model qwen -o json

  llmbatch estimate requests.jsonl --model-source s3://models/qwen2.5-0.5b-instruct/ \\
      --from-manifest s3://batches/out/run-1/ --price-input 0.05 --price-output 0.20

Prices are per million tokens, as in the gateway's config. The rate is tokens (prompt +
completion) per second per shard, as earlier runs' manifests record it.
"""


@dataclass
class Estimate:
    method: str  # how prompt tokens were counted
    requests: int = 0
    invalid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    assumed_completion: int = 0  # requests without max_tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "invalid": self.invalid,
            "promptTokens": self.prompt_tokens,
            "completionTokensUpperBound": self.completion_tokens,
            "requestsWithoutMaxTokens": self.assumed_completion,
            "promptTokenMethod": self.method,
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


PRICE_INPUT: Any = typer.Option(
    None, "--price-input", "--price-in", min=0, help="Price per million prompt tokens."
)
PRICE_OUTPUT: Any = typer.Option(
    None, "--price-output", "--price-out", min=0, help="Price per million completion tokens."
)
MANIFESTS: Any = typer.Option(
    None,
    "--from-manifest",
    help="An earlier run's manifest.json (or its output folder), local or s3://: its "
    "throughput gives the time. Repeatable.",
)
OPENAI_MODEL: Any = typer.Option(
    DEFAULT_OPENAI_MODEL,
    "--openai-model",
    help=f"Compare with this model's OpenAI batch price ({', '.join(OPENAI_BATCH_PRICES)}).",
)


def estimate(
    file: Path = JSONL_FILE,
    model_source: str | None = MODEL_SOURCE_OPTION,
    batchjob: Path | None = BATCHJOB_OPTION,
    config: Path | None = CONFIG_OPTION,
    model: str | None = MODEL_OPTION,
    parallelism: int = typer.Option(1, "--parallelism", min=1, help="Shards running at once."),
    rate: float | None = typer.Option(
        None, "--rate", min=0.001, help="Tokens per second per shard (instead of manifests)."
    ),
    manifests: list[str] | None = MANIFESTS,
    price_in: float | None = PRICE_INPUT,
    price_out: float | None = PRICE_OUTPUT,
    openai_model: str = OPENAI_MODEL,
    openai_price_in: float | None = typer.Option(None, "--openai-price-input", min=0),
    openai_price_out: float | None = typer.Option(None, "--openai-price-output", min=0),
    assume_output_tokens: int = typer.Option(
        256,
        "--assume-output-tokens",
        min=0,
        help="Completion tokens assumed for a request without max_tokens.",
    ),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Quote a batch: tokens (prompt, completion upper bound), GPU-seconds and wall time at
    --parallelism, and cost at your prices next to OpenAI's batch price."""
    choice = choose_model(model_source, batchjob, config, model)
    counter, method = load_counter(choice)
    result = estimate_file(file, counter, method, assume_output_tokens)
    prices = _prices(price_in, price_out, choice.prices if choice else None)
    openai = _openai_prices(openai_model, openai_price_in, openai_price_out)
    terms = quote(
        result.prompt_tokens,
        result.completion_tokens,
        _rate(rate, manifests or []),
        parallelism,
        prices,
        (openai_model, openai),
    )
    if output_format is OutputFormat.JSON:
        print_json({"file": str(file), **result.as_dict(), **terms})
        return
    _print_quote(result, terms, assume_output_tokens)


def _rate(rate: float | None, manifests: list[str]) -> Rate | None:
    if rate is not None and manifests:
        raise fail("give --rate or --from-manifest, not both")
    if rate is not None:
        return Rate(rate, "--rate")
    if not manifests:
        return None
    try:
        return rate_from_manifests(manifests)
    except QuoteError as exc:
        raise fail(str(exc)) from exc


def _prices(
    price_in: float | None, price_out: float | None, configured: tuple[float, float] | None
) -> tuple[float, float] | None:
    """The user's prices, else the gateway config's; a missing side counts as free."""
    if price_in is None and price_out is None:
        return configured
    return (price_in or 0.0, price_out or 0.0)


def _openai_prices(
    model: str, price_in: float | None, price_out: float | None
) -> tuple[float, float]:
    listed = OPENAI_BATCH_PRICES.get(model)
    if listed is None and (price_in is None or price_out is None):
        known = ", ".join(OPENAI_BATCH_PRICES)
        raise fail(f"no OpenAI batch price for {model!r} ({known}); give both --openai-price-*")
    base = listed or (0.0, 0.0)
    return (
        base[0] if price_in is None else price_in,
        base[1] if price_out is None else price_out,
    )


def _print_quote(result: Estimate, terms: dict[str, Any], assumed: int) -> None:
    skipped = f" ({result.invalid} invalid lines skipped)" if result.invalid else ""
    completion = f"<= {result.completion_tokens}"
    if result.assumed_completion:
        completion += (
            f"  [{result.assumed_completion} requests without max_tokens counted as {assumed}]"
        )
    rows = [
        ("requests", f"{result.requests}{skipped}"),
        ("prompt tokens", f"{result.prompt_tokens}  [{result.method}]"),
        ("completion tokens", completion),
        *_time_rows(terms),
    ]
    if "costUpperBound" in terms:
        per_million = f"in {terms['priceInputPerMillion']}, out {terms['priceOutputPerMillion']}"
        rows.append(("cost", f"<= ${terms['costUpperBound']:.6f} (per million: {per_million})"))
    openai = terms["openaiBatch"]
    per_million = f"in {openai['priceInputPerMillion']}, out {openai['priceOutputPerMillion']}"
    rows.append(
        (
            "OpenAI batch",
            f"<= ${openai['costUpperBound']:.6f} ({openai['model']}, per million: "
            f"{per_million}; prices as of {openai['pricesAsOf']})",
        )
    )
    for label, value in rows:
        typer.echo(f"{label + ':':<19}{value}")


def _time_rows(terms: dict[str, Any]) -> list[tuple[str, str]]:
    if "tokensPerSecondPerShard" not in terms:
        return [("time", "give --rate or --from-manifest for GPU and wall time")]
    rate = f"{terms['tokensPerSecondPerShard']} tokens/s per shard [{terms['rateFrom']}]"
    wall = f"<= {terms['wallSecondsUpperBound']} s at parallelism {terms['parallelism']}"
    return [
        ("throughput", rate),
        ("GPU time", f"<= {terms['gpuSecondsUpperBound']} shard-seconds"),
        ("wall time", wall),
    ]
