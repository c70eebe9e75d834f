"""Which model a local command (``estimate``, ``validate``) counts tokens for, read from where
the user already named it: ``--model-source``, a BatchJob YAML (``--batchjob``: its
spec.model and spec.storage) or the gateway config (``--config`` with ``--model``: the entry's
tokenizer or source, chatTemplate and prices). The tokenizer is then found by
``llmbatch.models.tokenizer_source`` (a local folder, an s3:// model's tokenizer files alone,
a locally cached hf:// model), so the counts are those of the plan step and the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from llmbatch.cli.options import fail

if TYPE_CHECKING:
    from llmbatch.api.tokens import PromptCounter
    from llmbatch.storage import StorageSettings

MODEL_SOURCE_OPTION: Any = typer.Option(
    None,
    "--model-source",
    help="The model (local folder, s3://bucket/prefix, hf://org/name): count with its "
    "tokenizer and chat template.",
)
BATCHJOB_OPTION: Any = typer.Option(
    None, "--batchjob", exists=True, dir_okay=False, help="Read the model from a BatchJob YAML."
)
CONFIG_OPTION: Any = typer.Option(
    None,
    "--config",
    exists=True,
    dir_okay=False,
    help="Read the model (and prices) from a gateway config; with --model.",
)
MODEL_OPTION: Any = typer.Option(None, "--model", help="The gateway config's model name.")
EXACT_HINT = "name the model (--model-source, --batchjob or --config) for exact counts"


@dataclass(frozen=True)
class ModelChoice:
    source: str
    chat_template: str | None = None
    settings: StorageSettings | None = None
    # (input, output) US dollars per million tokens, from a gateway config.
    prices: tuple[float, float] | None = None


def choose_model(
    model_source: str | None, batchjob: Path | None, config: Path | None, model: str | None
) -> ModelChoice | None:
    """The model named by at most one of the three ways; None when none is given."""
    ways = {"--model-source": model_source, "--batchjob": batchjob, "--config": config}
    given = [name for name, value in ways.items() if value is not None]
    if len(given) > 1:
        raise fail(f"name the model one way: {' and '.join(given)} were both given")
    if model is not None and config is None:
        raise fail("--model names a model of a gateway config: add --config")
    if model_source is not None:
        return ModelChoice(model_source)
    if batchjob is not None:
        return _from_batchjob(batchjob)
    if config is not None:
        return _from_gateway_config(config, model)
    return None


def _from_batchjob(path: Path) -> ModelChoice:
    import yaml
    from pydantic import ValidationError

    from llmbatch.api.batchjob import ModelSpec, StorageSpec
    from llmbatch.storage import StorageSettings

    try:
        spec = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("spec") or {}
        model = ModelSpec.model_validate(spec.get("model"))
        storage = StorageSpec.model_validate(spec.get("storage") or {})
    except (yaml.YAMLError, ValidationError, AttributeError) as exc:
        raise fail(f"{path}: not a BatchJob with a valid spec.model: {exc}") from exc
    env = StorageSettings.from_env()
    settings = StorageSettings(
        endpoint_url=storage.endpoint or env.endpoint_url,
        region=storage.region or env.region,
        access_key_id=env.access_key_id,
        secret_access_key=env.secret_access_key,
    )
    return ModelChoice(model.source, model.chat_template, settings)


def _from_gateway_config(path: Path, name: str | None) -> ModelChoice:
    from pydantic import ValidationError

    from llmbatch.gateway.config import load_config

    try:
        config = load_config(path)
    except (OSError, ValueError, ValidationError) as exc:
        raise fail(f"{path}: not a valid gateway config: {exc}") from exc
    if name is None and len(config.models) == 1:
        name = next(iter(config.models))
    if name is None or name not in config.models:
        served = ", ".join(config.models) or "none"
        raise fail(f"--model must name one of the config's models ({served})")
    entry = config.models[name]
    price = config.prices.get(name)
    return ModelChoice(
        entry.tokenizer or entry.source,
        entry.chat_template,
        prices=(price.input, price.output) if price else None,
    )


def load_counter(choice: ModelChoice | None) -> tuple[PromptCounter, str]:
    """The prompt counter and how its counts are labelled; the heuristic when the model's
    tokenizer cannot be found (said on stderr), an error when it is found but unreadable."""
    from llmbatch.api import tokens
    from llmbatch.models.tokenizer_source import TokenizerNotFound, tokenizer_directory

    heuristic = f"{tokens.HEURISTIC}; {EXACT_HINT}"
    if choice is None:
        return tokens.PromptCounter(), heuristic
    try:
        directory = tokenizer_directory(choice.source, choice.settings)
    except TokenizerNotFound as exc:
        typer.echo(f"note: {exc}; using the heuristic", err=True)
        return tokens.PromptCounter(), heuristic
    try:
        counter = tokens.load_counter(directory, choice.chat_template)
    except (ImportError, OSError, ValueError) as exc:
        raise fail(f"could not load the tokenizer from {directory}: {exc}") from exc
    return counter, f"tokenizer of {choice.source}"
