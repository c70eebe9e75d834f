"""``llmbatch estimate`` as a quote: the model (and its tokenizer) read from a BatchJob or a
gateway config, time from a rate or earlier manifests, cost next to OpenAI's batch price."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmbatch.api.documents import Manifest, ModelRef, Timing, TokenUsage
from llmbatch.api.tokens import load_counter
from llmbatch.cli.quote import OPENAI_BATCH_PRICES
from tests.cli.app import cli_app

runner = CliRunner()
BODY = {"model": "tiny-qwen", "messages": [{"role": "user", "content": "Hello there"}]}


@pytest.fixture
def requests_file(tmp_path: Path) -> Path:
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {**BODY, "max_tokens": 10}}
        for i in range(4)
    ]  # fmt: skip
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def estimate(*args: str) -> dict[str, Any]:
    result = runner.invoke(cli_app(), ["estimate", *args, "-o", "json"])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def exact_prompt_tokens(model: Path) -> int:
    return load_counter(model).count(BODY, "/v1/chat/completions")


def test_model_from_a_batchjob_yaml(requests_file: Path, tiny_model: Path, tmp_path: Path) -> None:
    job = {"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchJob",
           "spec": {"model": {"name": "tiny-qwen", "source": str(tiny_model)}}}  # fmt: skip
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    report = estimate(str(requests_file), "--batchjob", str(path))
    assert report["promptTokenMethod"] == f"tokenizer of {tiny_model}"
    assert report["promptTokens"] == 4 * exact_prompt_tokens(tiny_model)


def test_model_and_prices_from_a_gateway_config(
    requests_file: Path, tiny_model: Path, tmp_path: Path
) -> None:
    config = {
        "namespace": "default",
        "storage": {"root": f"file://{tmp_path}/gw"},
        "models": {"tiny-qwen": {"source": "s3://nowhere/weights/", "tokenizer": str(tiny_model)}},
        "prices": {"tiny-qwen": {"input": 0.5, "output": 1.5}},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    report = estimate(str(requests_file), "--config", str(path), "--model", "tiny-qwen")
    prompt = 4 * exact_prompt_tokens(tiny_model)
    assert report["promptTokens"] == prompt
    assert report["costUpperBound"] == pytest.approx((prompt * 0.5 + 40 * 1.5) / 1e6)
    openai_in, openai_out = OPENAI_BATCH_PRICES["gpt-4o-mini"]
    expected = (prompt * openai_in + 40 * openai_out) / 1e6
    assert report["openaiBatch"]["costUpperBound"] == pytest.approx(expected)


def test_time_from_a_given_rate(requests_file: Path) -> None:
    report = estimate(str(requests_file), "--rate", "10", "--parallelism", "2")
    tokens = report["promptTokens"] + report["completionTokensUpperBound"]
    assert report["rateFrom"] == "--rate"
    assert report["gpuSecondsUpperBound"] == pytest.approx(tokens / 10, abs=0.05)
    assert report["wallSecondsUpperBound"] == pytest.approx(tokens / 20, abs=0.05)


def test_time_from_earlier_manifests(requests_file: Path, tmp_path: Path) -> None:
    # 3000 tokens in 10 s on 2 shards: 150 tokens/s per shard.
    manifest = Manifest(
        model=ModelRef(name="tiny-qwen"),
        shard_count=2,
        usage=TokenUsage(prompt_tokens=1000, completion_tokens=2000),
        timing=Timing(started_at="2026-01-01T00:00:00Z", run_finished_at="2026-01-01T00:00:10Z"),
    )
    out = tmp_path / "run-1"
    out.mkdir()
    (out / "manifest.json").write_bytes(manifest.to_json())
    report = estimate(str(requests_file), "--from-manifest", str(out), "--price-input", "1")
    assert report["tokensPerSecondPerShard"] == pytest.approx(150)
    assert "tiny-qwen" in report["rateFrom"]
    assert report["costUpperBound"] == pytest.approx(report["promptTokens"] / 1e6)


def test_text_quote_and_refusals(requests_file: Path, tiny_model: Path) -> None:
    app = cli_app()
    text = runner.invoke(app, ["estimate", str(requests_file), "--rate", "5"])
    assert text.exit_code == 0, text.output
    for label in ("prompt tokens:", "GPU time:", "wall time:", "OpenAI batch:", "as of"):
        assert label in text.stdout
    both = ["estimate", str(requests_file), "--model-source", str(tiny_model), "--batchjob"]
    assert runner.invoke(app, [*both, str(requests_file)]).exit_code != 0
    unknown = ["estimate", str(requests_file), "--openai-model", "gpt-9"]
    assert "no OpenAI batch price" in runner.invoke(app, unknown).output


def test_validate_counts_prompt_tokens_as_estimate_does(
    requests_file: Path, tiny_model: Path
) -> None:
    app = cli_app()
    args = [str(requests_file), "--model-source", str(tiny_model), "-o", "json"]
    validated = runner.invoke(app, ["validate", *args])
    assert validated.exit_code == 0, validated.output
    report = json.loads(validated.stdout)
    assert report["promptTokens"] == 4 * exact_prompt_tokens(tiny_model)
    assert report["promptTokens"] == estimate(*args[:-2])["promptTokens"]
    plain = json.loads(runner.invoke(app, ["validate", str(requests_file), "-o", "json"]).stdout)
    assert "promptTokens" not in plain


def test_greedy_choices_are_refused_by_validate(tmp_path: Path) -> None:
    body = {**BODY, "n": 2, "temperature": 0}
    path = tmp_path / "greedy.jsonl"
    line = {"custom_id": "g", "method": "POST", "url": "/v1/chat/completions", "body": body}
    path.write_text(json.dumps(line) + "\n")
    result = runner.invoke(cli_app(), ["validate", str(path)])
    assert result.exit_code == 1
    assert "greedy_choices" in result.output and "several greedy choices" in result.output
