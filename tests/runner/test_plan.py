"""The plan step on small files: exact totals, chunks whose byte ranges give back exactly the
runnable lines, error parts with line numbers, every line accounted for once, tokens,
idempotence and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmbatch.api.layout import OutputLayout
from llmbatch.api.lines import Endpoint
from llmbatch.api.tokens import heuristic_tokens, load_counter
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.plan import PlanConfig, make_plan, read_plan
from llmbatch.storage import get_store
from tests.runner.batches import chat_line, write_lines
from tests.runner.plan_check import plan_file

MIXED = [
    chat_line("a", "first"),  # 1 runs
    b"{not json",  # 2 invalid_json
    b"",  # 3 blank
    chat_line("b", "other model", model="someone-else"),  # 4 model_not_found
    chat_line("a", "again"),  # 5 duplicate of 1
    chat_line("c", "two answers", max_tokens=5, n=2),  # 6 runs
    b"   ",  # 7 blank
    chat_line("d", "last", max_completion_tokens=3),  # 8 runs
    chat_line("e", "wrong url", url="/v1/completions"),  # 9 mixed_url
    chat_line("f", "after the bad ones"),  # 10 runs
]
RUNNABLE = [1, 6, 8, 10]


def body_of(raw: bytes) -> dict[str, object]:
    body = json.loads(raw)["body"]
    assert isinstance(body, dict)
    return body


def test_plan_of_a_mixed_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", MIXED)
    planned = plan_file(path, tmp_path / "out", chunk_lines=3)
    summary = planned.summary
    assert (summary.input_lines, summary.total, summary.runnable, summary.invalid) == (10, 8, 4, 4)
    assert summary.input_bytes == path.stat().st_size
    assert summary.token_counter == "estimate"
    assert summary.chunk_count == 2
    assert summary.segments[0].model_dump() == {
        "index": 0,
        "first_line": 1,
        "last_line": 10,
        "first_chunk": 0,
        "chunks": 2,
    }
    lines = path.read_bytes().split(b"\n")
    chunks = planned.chunk_lines(path.read_bytes())
    assert [[number for number, _ in chunk] for chunk in chunks] == [[1, 6, 8], [10]]
    assert all(raw == lines[number - 1] for chunk in chunks for number, raw in chunk)
    # Lines 1, 6 and 8 are not neighbours: three ranges; a range never spans a skipped line.
    assert [len(c.ranges) for c in planned.chunks()] == [3, 1]
    prompts = [heuristic_tokens(body_of(lines[n - 1])) for n in RUNNABLE]
    assert summary.prompt_tokens == sum(prompts)
    assert summary.max_completion_tokens == 5 * 2 + 3  # no max_tokens and no context: 0


def test_error_parts_name_each_invalid_line_once(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", MIXED)
    planned = plan_file(path, tmp_path / "out", batch_name="b1")
    errors = {record.lineno: json.loads(record.line) for record in planned.error_records()}
    assert sorted(errors) == [2, 4, 5, 9]
    assert errors[2]["error"]["message"].startswith("invalid_json:")
    assert errors[4]["error"]["code"] == "model_not_found"
    assert errors[5]["error"]["message"].startswith("duplicate_custom_id:")
    assert errors[5]["custom_id"] == "a"
    assert errors[9]["error"]["message"].startswith("mixed_url:")
    assert all(e["error"]["line"] == n and e["response"] is None for n, e in errors.items())
    # Every non-blank line in exactly one of the chunks and the error parts.
    ran = [number for chunk in planned.chunk_lines(path.read_bytes()) for number, _ in chunk]
    placed = ran + [record.lineno for record in planned.error_records()]
    assert sorted(placed) == [n for n in range(1, 11) if n not in (3, 7)]


def test_last_line_without_newline_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_line("a", "x") + b"\r\n" + chat_line("b", "y"))
    planned = plan_file(path, tmp_path / "out")
    assert planned.summary.runnable == 2
    (chunk,) = planned.chunks()
    assert [(r.offset, r.length) for r in chunk.ranges] == [(0, path.stat().st_size)]
    back = planned.chunk_lines(path.read_bytes())[0]
    assert [raw.strip() for _, raw in back] == [chat_line("a", "x"), chat_line("b", "y")]


def test_segments_and_chunk_limits(tmp_path: Path) -> None:
    lines = [chat_line(f"r{i:02d}", f"question {i:02d}") for i in range(25)]  # one size
    lines[7] = b""
    path = write_lines(tmp_path / "in.jsonl", lines)
    size = len(lines[0]) + 1
    planned = plan_file(
        path, tmp_path / "out", segment_lines=10, chunk_lines=4, chunk_bytes=3 * size
    )
    segments = [
        (s.first_line, s.last_line, s.first_chunk, s.chunks) for s in planned.summary.segments
    ]
    # The byte limit holds 3 lines, below the 4-line limit: 9 lines, 10 lines and 5 lines.
    assert segments == [(1, 10, 0, 3), (11, 20, 3, 4), (21, 25, 7, 2)]
    chunks = planned.chunks()
    assert [c.lines for c in chunks] == [3, 3, 3, 3, 3, 3, 1, 3, 2]
    assert all(c.bytes <= 3 * size for c in chunks)
    assert [c.segment for c in chunks] == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert sum(c.lines for c in chunks) == planned.summary.runnable == 24
    numbers = [n for chunk in planned.chunk_lines(path.read_bytes()) for n, _ in chunk]
    assert numbers == [n for n in range(1, 26) if n != 8]


def test_completion_budget_uses_the_context_left(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", [chat_line("a", "hi"), chat_line("b", "x", n=3)])
    planned = plan_file(path, tmp_path / "out", engine_args={"max_model_len": 100})
    prompts = [heuristic_tokens(body_of(raw)) for raw in path.read_bytes().splitlines()]
    assert planned.summary.max_completion_tokens == (100 - prompts[0]) + 3 * (100 - prompts[1])


def test_tokens_counted_with_the_models_tokenizer(tmp_path: Path, tiny_model: Path) -> None:
    lines = [chat_line(f"r{i}", "tell me something " * i) for i in range(1, 6)]
    path = write_lines(tmp_path / "in.jsonl", lines)
    planned = plan_file(path, tmp_path / "out", model_source=str(tiny_model))
    counter = load_counter(tiny_model)
    assert planned.summary.token_counter == "tokenizer"
    assert planned.summary.prompt_tokens == sum(counter.count(body_of(raw)) for raw in lines)
    assert sum(c.prompt_tokens for c in planned.chunks()) == planned.summary.prompt_tokens


def test_embeddings_endpoint(tmp_path: Path) -> None:
    line = json.dumps(
        {
            "custom_id": "e1",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "tiny-qwen", "input": "hello"},
        }
    ).encode()
    path = write_lines(tmp_path / "in.jsonl", [line, chat_line("c", "not an embedding")])
    planned = plan_file(path, tmp_path / "out", endpoint=Endpoint.EMBEDDINGS)
    assert (planned.summary.runnable, planned.summary.invalid) == (1, 1)
    assert planned.summary.max_completion_tokens == 0


def snapshot(root: Path) -> dict[Path, tuple[int, bytes]]:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_second_plan_returns_the_same_summary_and_writes_nothing(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", MIXED)
    first = plan_file(path, tmp_path / "out", chunk_lines=2)
    before = snapshot(tmp_path / "out")
    path.unlink()  # the second call must not even read the input
    second = plan_file(path, tmp_path / "out", chunk_lines=2)
    assert second.summary == first.summary
    assert snapshot(tmp_path / "out") == before


def test_a_plan_of_another_input_is_refused(tmp_path: Path) -> None:
    first = write_lines(tmp_path / "one.jsonl", MIXED)
    other = write_lines(tmp_path / "two.jsonl", MIXED)
    plan_file(first, tmp_path / "out")
    with pytest.raises(PermanentError, match=re.escape(f"plan of {first}, not of {other}")):
        plan_file(other, tmp_path / "out")


def test_a_lost_race_returns_the_winners_plan(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", MIXED)
    output = tmp_path / "out"
    config = PlanConfig(str(path), str(output), "hf://x/y", "tiny-qwen")
    layout = OutputLayout(str(output))
    store = get_store(str(output))
    winner = make_plan(config)
    # Another step's plan.json appears between our read and our write: ours is dropped.
    store.delete(layout.plan_summary)
    original_write = store.write_bytes_if_absent

    def racing(uri: str, data: bytes, content_type: str = "") -> bool:
        store.write_bytes(uri, winner.model_copy(update={"created_at": "earlier"}).to_json())
        return original_write(uri, data, content_type)

    store.write_bytes_if_absent = racing  # type: ignore[method-assign]
    try:
        assert make_plan(config).created_at == "earlier"
    finally:
        del store.write_bytes_if_absent
    assert read_plan(store, layout) == winner.model_copy(update={"created_at": "earlier"})


def test_missing_input_fails_fast_with_its_uri(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(PermanentError, match=re.escape(str(missing))):
        plan_file(missing, tmp_path / "out")
    assert not (tmp_path / "out" / "plan" / "plan.json").exists()


def test_empty_input(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"")
    summary = plan_file(path, tmp_path / "out").summary
    assert (summary.total, summary.chunk_count, summary.segments, summary.input_lines) == (
        0,
        0,
        [],
        0,
    )
    assert (
        summary.input_sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_bad_limits_are_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="chunk_lines"):
        PlanConfig("in", str(tmp_path), "m", "n", chunk_lines=0)
