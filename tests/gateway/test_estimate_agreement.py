"""The gateway's cost estimate and ``llmbatch estimate`` give the same numbers for the same file,
with the heuristic and with the model's own tokenizer (one rule: llmbatch.api.tokens)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from typer.testing import CliRunner

from llmbatch.gateway.routes_extras import _scan
from llmbatch.gateway.state import Gateway
from tests.cli.app import cli_app
from tests.gateway.conftest import GatewayEnv, make_config
from tests.gateway.test_sdk import client


def batch(model: str) -> bytes:
    """Chat requests that exercise every part of the rule: several messages, content parts,
    multi-byte text, several choices, max_completion_tokens."""
    bodies: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 8},
        {
            "messages": [
                {"role": "system", "content": "You answer in one word."},
                {"role": "user", "content": "Capital of France?"},
            ],
            "max_completion_tokens": 5,
            "n": 3,
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Describe: 日本語のテキスト"}],
                }
            ],
            "max_tokens": 16,
        },
        {"messages": [{"role": "user", "content": "naïve café ☕ " * 7}], "max_tokens": 2},
    ]
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, **body},
        }
        for i, body in enumerate(bodies)
    ]
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)


def cli_estimate(path: Path, *options: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli_app(), ["estimate", str(path), "-o", "json", *options])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_heuristic_estimates_agree(gateway_env: GatewayEnv, tmp_path: Path) -> None:
    data = batch("tiny-qwen")
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    key = gateway_env.key()
    file_id = client(gateway_env, key).files.create(file=("in.jsonl", data), purpose="batch").id
    with gateway_env.http(key) as http:
        answer = http.post("/v1/batches/cost-estimate", json={"input_file_id": file_id})
        assert answer.status_code == 200, answer.text
        gateway = answer.json()
    cli = cli_estimate(path)
    assert gateway["token_count"] == "estimated"
    assert cli["promptTokenMethod"].startswith("heuristic")
    assert (gateway["requests"], cli["requests"]) == (4, 4)
    # ceil(UTF-8 bytes / 4) per text, +4 per message: 11 bytes; 23 and 18; 34; 7 x 17.
    expected = (3 + 4) + (6 + 5 + 2 * 4) + (9 + 4) + (30 + 4)
    assert gateway["input_tokens"] == cli["promptTokens"] == expected
    assert gateway["max_output_tokens"] == cli["completionTokensUpperBound"] == 8 + 15 + 16 + 2


def test_tokenizer_estimates_agree(tiny_model: Path, tmp_path: Path) -> None:
    # The gateway's own scan, with a config whose model source is the local tiny model (a
    # served name of its own: the gateway keeps one counter per name for the process).
    config = make_config(
        "unused",
        "http://127.0.0.1:1",
        models={"tiny-local": {"source": str(tiny_model), "engineArgs": {"max_model_len": 512}}},
    )
    data = batch("tiny-local")
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    scan = _scan(cast(Gateway, SimpleNamespace(config=config, store=None)), data.splitlines(), True)
    cli = cli_estimate(path, "--model-source", str(tiny_model))
    assert scan.exact_tokens and cli["promptTokenMethod"] == f"tokenizer of {tiny_model}"
    assert scan.input_tokens == cli["promptTokens"] > 0
    assert scan.max_output_tokens == cli["completionTokensUpperBound"]
    # The exact count is not the heuristic one: the tokenizer really was used.
    assert cli["promptTokens"] != cli_estimate(path)["promptTokens"]
