"""Content on real models, through the product: `llmbatch run` on SmolLM2-135M-Instruct (greedy
answers, JSON schema, logprobs, n) and on all-MiniLM-L6-v2 (embeddings against transformers).

Each model gets one `llmbatch run` process, so one engine start: every check of a model is a
line of one batch, and the tests read their line's result. The known questions were chosen
for wide margins: at every token up to the answer word the greedy choice leads the runner-up
by at least 0.6 nats, so float noise between machines or batch shapes cannot flip them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.runner.batches import read_jsonl

pytestmark = pytest.mark.slow

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"
CONCISE = "You are a concise assistant. Answer in one short sentence."
# custom_id -> (system prompt or None, question, a word the answer must contain)
KNOWN: dict[str, tuple[str | None, str, str]] = {
    "france": (CONCISE, "What is the capital of France?", "Paris"),
    "germany": (None, "What is the capital of Germany?", "Berlin"),
    "japan": (CONCISE, "What is the capital of Japan?", "Tokyo"),
    "uk": (CONCISE, "What is the capital of the United Kingdom?", "London"),
    "gold": (CONCISE, "What is the chemical symbol for gold?", "Au"),
    "mice": (None, "What is the plural of mouse?", "mice"),
}
CAPITAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}
SENTENCES = [
    "The capital of France is Paris.",
    "Paris is the largest city in France.",
    "Batch inference runs offline on a cluster.",
    "A cat sat on the mat.",
]


def line(custom_id: str, model: str, url: str, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": model, **body}}


def chat(custom_id: str, question: str, system: str | None = None, **params: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    params.setdefault("temperature", 0)
    return line(custom_id, CHAT_MODEL, "/v1/chat/completions", messages=messages, **params)


def llmbatch_run(work: Path, model: Path, lines: list[dict[str, Any]], *extra: str) -> Path:
    """`llmbatch run` as a user runs it (its own process, one engine); returns the output dir."""
    source, out = work / "input.jsonl", work / "out"
    source.write_text("".join(json.dumps(item) + "\n" for item in lines))
    command = [sys.executable, "-m", "llmbatch.cli.main", "run", str(source), "-o", str(out)]
    command += ["-m", str(model), *extra]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=480)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def bodies(out: Path) -> dict[str, dict[str, Any]]:
    """Response bodies by custom_id; no line may have failed."""
    assert read_jsonl((out / "errors.jsonl").read_bytes()) == []
    rows = read_jsonl((out / "output.jsonl").read_bytes())
    return {row["custom_id"]: row["response"]["body"] for row in rows}


@pytest.fixture(scope="module")
def chat_results(smollm2_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    lines = [
        chat(cid, question, system, max_tokens=24) for cid, (system, question, _) in KNOWN.items()
    ]
    schema = {"name": "capital", "schema": CAPITAL_SCHEMA, "strict": True}
    lines.append(
        chat(
            "json",
            "What is the capital of France?",
            max_tokens=64,
            response_format={"type": "json_schema", "json_schema": schema},
        )
    )
    lines.append(
        chat("logprobs", KNOWN["japan"][1], CONCISE, max_tokens=8, logprobs=True, top_logprobs=3)
    )
    # Same body twice: a seed makes sampling repeatable per request, whatever runs beside it.
    for cid in ("n-a", "n-b"):
        lines.append(
            chat(
                cid,
                "Write a one-line poem about the sea.",
                max_tokens=16,
                n=2,
                temperature=0.8,
                seed=11,
            )
        )
    # The folder's name is the served name: no --served-model-name needed.
    assert smollm2_model.name == CHAT_MODEL
    # A 1,024-token context (the model's is 8,192) keeps the engine's start-up short.
    engine = ["--engine-args", json.dumps({"max_model_len": 1024})]
    return bodies(llmbatch_run(tmp_path_factory.mktemp("smollm2"), smollm2_model, lines, *engine))


@pytest.mark.parametrize("custom_id", list(KNOWN))
def test_known_answers(chat_results: dict[str, Any], custom_id: str) -> None:
    body = chat_results[custom_id]
    content = body["choices"][0]["message"]["content"]
    assert KNOWN[custom_id][2] in content, content
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["model"] == CHAT_MODEL


def test_json_schema_output_parses_and_validates(chat_results: dict[str, Any]) -> None:
    content = chat_results["json"]["choices"][0]["message"]["content"]
    answer = json.loads(content)
    jsonschema.validate(answer, CAPITAL_SCHEMA)
    assert "Paris" in answer["city"]


def test_logprobs_are_those_of_the_greedy_tokens(chat_results: dict[str, Any]) -> None:
    body = chat_results["logprobs"]
    tokens = body["choices"][0]["logprobs"]["content"]
    assert len(tokens) == body["usage"]["completion_tokens"] == 8
    # The tokens spell the answer (the last may be the end-of-turn token, which is not content).
    assert "".join(t["token"] for t in tokens).startswith(body["choices"][0]["message"]["content"])
    for token in tokens:
        top = token["top_logprobs"]
        assert len(top) == 3
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        # Greedy: the chosen token is the most likely one, with its probability.
        assert (top[0]["token"], top[0]["logprob"]) == (token["token"], token["logprob"])
        assert token["logprob"] <= 0 and bytes(token["bytes"]).decode() == token["token"]


def test_n_samples_are_n_choices_repeatable_with_a_seed(chat_results: dict[str, Any]) -> None:
    first, again = chat_results["n-a"], chat_results["n-b"]
    assert [c["index"] for c in first["choices"]] == [0, 1]
    texts = [c["message"]["content"] for c in first["choices"]]
    assert all(texts)
    assert texts == [c["message"]["content"] for c in again["choices"]]
    usage = first["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def mean_pooled(model: Path, sentences: list[str]) -> list[list[float]]:
    """sentence-transformers' recipe for all-MiniLM-L6-v2, by hand: mean of the token states
    under the attention mask, then L2 normalization."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    encoder = AutoModel.from_pretrained(str(model), dtype=torch.float32).eval()
    batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        states = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (states * mask).sum(1) / mask.sum(1)
    vectors: list[list[float]] = torch.nn.functional.normalize(mean, dim=-1).tolist()
    return vectors


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embeddings_match_transformers_mean_pooling(minilm_model: Path, tmp_path: Path) -> None:
    url = "/v1/embeddings"
    lines = [line(f"e{i}", EMBED_MODEL, url, input=text) for i, text in enumerate(SENTENCES)]
    lines.append(line("pair", EMBED_MODEL, url, input=SENTENCES[:2]))
    out = llmbatch_run(tmp_path, minilm_model, lines, "--endpoint", url)
    results = bodies(out)
    expected = mean_pooled(minilm_model, SENTENCES)
    for i, reference in enumerate(expected):
        [item] = results[f"e{i}"]["data"]
        assert len(item["embedding"]) == 384
        assert cosine(item["embedding"], reference) > 0.999
    pair = [item["embedding"] for item in results["pair"]["data"]]
    assert [cosine(v, r) > 0.999 for v, r in zip(pair, expected[:2], strict=True)] == [True, True]
    # Meaning shows: the two sentences about Paris are closer than Paris and the cat.
    paris, paris_too, cat = (results[f"e{i}"]["data"][0]["embedding"] for i in (0, 1, 3))
    assert cosine(paris, paris_too) > cosine(paris, cat) + 0.3
