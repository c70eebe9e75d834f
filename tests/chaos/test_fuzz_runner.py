"""Adversarial JSONL through the runner itself (one shard then finalize, in-process, real vLLM
on the tiny model): the batch never crashes or hangs, and every non-blank input line ends in
exactly one of output.jsonl and errors.jsonl. Few examples: each costs seconds on 2 cores."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from llmbatch.api.lines import Endpoint
from tests.chaos.jsonl_gen import GenLine, expected, join, jsonl_files
from tests.chaos.profiles import FUZZ_SLOW

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def engine(tiny_model: Path, tiny_served_name: str) -> Iterator[Any]:
    from llmbatch.runner.engine import load_engine

    # load_engine copes with flask being imported here (moto's in-process S3 server).
    yield load_engine(
        tiny_model,
        tiny_served_name,
        Endpoint.CHAT_COMPLETIONS,
        {"max_model_len": 512, "seed": 0},
    )


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@FUZZ_SLOW
@given(lines=jsonl_files(max_lines=8, urls=["/v1/chat/completions"]))
def test_runner_accounts_for_every_line(
    lines: list[GenLine], engine: Any, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from llmbatch.runner.local import run_local

    work = tmp_path_factory.mktemp("fuzz-run")
    source = work / "input.jsonl"
    source.write_bytes(join(lines))
    out = work / "out"
    manifest = run_local(
        source.as_uri(),
        out.as_uri() + "/",
        str(tiny_model),
        "tiny-qwen",
        engine=engine,
        plan_options={"chunk_lines": 3},
    )
    output, errors = _rows(out / "output.jsonl"), _rows(out / "errors.jsonl")
    nonblank = sum(1 for line in lines if line.raw.strip())
    assert len(output) + len(errors) == nonblank, (len(output), len(errors), nonblank)
    assert manifest["requestCounts"] == {
        "total": nonblank,
        "completed": len(output),
        "failed": len(errors),
    }
    # Each valid line (by the shared rules) was answered or explained under its own custom_id.
    want = [v for v in expected(lines, 64 * 1024 * 1024, "/v1/chat/completions") if v.valid]
    seen = collections.Counter(row["custom_id"] for row in output + errors)
    for verdict in want:
        assert seen[verdict.custom_id] >= 1, verdict
    assert all(row["error"] is None for row in output)
    assert all(row["error"] or row["response"]["status_code"] != 200 for row in errors)
