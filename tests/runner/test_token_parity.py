"""The estimate's prompt tokens are exactly the runner's: ``llmbatch estimate`` with the model's
tokenizer (found from the same model source) gives, for the same file, the prompt tokens vLLM
reports per line and the manifest totals, on chat, completions and Responses files.

One in-process vLLM engine on the tiny model serves all three endpoints (one engine start);
``run_local`` is what ``llmbatch run`` runs: the plan step, the shard and finalize.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmbatch.api.lines import Endpoint
from llmbatch.api.tokens import load_counter
from llmbatch.runner.local import run_local
from tests.cli.app import cli_app
from tests.runner.batches import by_custom_id, read_jsonl, write_lines

pytestmark = pytest.mark.slow

NAME = "tiny-qwen"
SYSTEM = {"role": "system", "content": "You answer in one short sentence."}
PARTS = [{"type": "text", "text": "Two parts:"}, {"type": "text", "text": "joined by vLLM."}]


def line(custom_id: str, url: str, **fields: Any) -> bytes:
    # A Responses request names its completion budget max_output_tokens.
    budget = "max_output_tokens" if url == Endpoint.RESPONSES else "max_tokens"
    body = {"model": NAME, budget: 2, "temperature": 0, **fields}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode()


FILES: dict[Endpoint, list[bytes]] = {
    Endpoint.CHAT_COMPLETIONS: [
        line("plain", "/v1/chat/completions", messages=[{"role": "user", "content": "Hi!"}]),
        line("system", "/v1/chat/completions",
             messages=[SYSTEM, {"role": "user", "content": "What is the capital of France?"}]),
        line("parts", "/v1/chat/completions", messages=[{"role": "user", "content": PARTS}]),
        line("turns", "/v1/chat/completions", messages=[
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another, in French: é, ü, 日本."},
        ]),
    ],
    Endpoint.COMPLETIONS: [
        line("text", "/v1/completions", prompt="The capital of France is"),
        line("ids", "/v1/completions", prompt=[5, 6, 7, 8]),
        line("unicode", "/v1/completions", prompt="Ünïcödé 日本語 text"),
    ],
    Endpoint.RESPONSES: [
        line("string", "/v1/responses", input="What is 2 + 2?"),
        line("items", "/v1/responses", instructions="Be brief.",
             input=[{"role": "user", "content": "Say hello."}]),
    ],
}  # fmt: skip


def reported_prompt_tokens(row: dict[str, Any]) -> int:
    usage = row["response"]["body"]["usage"]
    return int(usage.get("prompt_tokens", usage.get("input_tokens")))


@pytest.mark.parametrize("endpoint", list(FILES), ids=["chat", "completions", "responses"])
def test_estimate_equals_the_runners_prompt_tokens(
    endpoint: Endpoint, tmp_path: Path, chat_engine: Any, tiny_model: Path
) -> None:
    from llmbatch.runner.engine import GenerationEngine

    engine = GenerationEngine(chat_engine.llm, NAME, endpoint, chat_engine.engine_args)
    source = write_lines(tmp_path / "in.jsonl", FILES[endpoint])
    out = tmp_path / "out"
    manifest = run_local(str(source), str(out), str(tiny_model), NAME, endpoint, engine=engine)
    rows = read_jsonl((out / "output.jsonl").read_bytes())
    assert len(rows) == len(FILES[endpoint]), (out / "errors.jsonl").read_text()

    counter = load_counter(tiny_model)
    requests = by_custom_id([json.loads(raw) for raw in FILES[endpoint]])
    for custom_id, row in by_custom_id(rows).items():
        counted = counter.count(requests[custom_id]["body"], endpoint.value)
        assert counted == reported_prompt_tokens(row), custom_id

    result = CliRunner().invoke(
        cli_app(), ["estimate", str(source), "--model-source", str(tiny_model), "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.stdout)
    assert estimate["promptTokens"] == manifest["usage"]["promptTokens"]
    assert estimate["promptTokens"] == sum(map(reported_prompt_tokens, rows))
