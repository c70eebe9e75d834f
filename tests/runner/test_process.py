"""``llmbatch-runner`` as the Job runs it: a process, its exit codes, SIGTERM and SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.lines import Endpoint
from llmbatch.runner.records import Record, decode_record
from tests.runner.batches import chat_batch, read_jsonl, write_lines
from tests.runner.plans import write_plan
from tests.runner.processes import ENGINE_ARGS, NAME, finish, run_args, runner


def test_no_plan_or_a_missing_input_exits_permanent(tmp_path: Path, tiny_model: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(2))
    out = tmp_path / "out"
    code, err = finish(runner(*run_args(source, out, tiny_model)))
    assert code == ExitCode.PERMANENT and "no plan at" in err
    write_plan(str(source), str(out))
    source.unlink()
    code, err = finish(runner(*run_args(source, out, tiny_model)))
    assert code == ExitCode.PERMANENT
    assert "in.jsonl does not exist" in err


def test_missing_bucket_exits_permanent(tmp_path: Path, tiny_model: Path, s3_server: Any) -> None:
    proc = runner(
        *run_args("s3://no-such-bucket/in.jsonl", "s3://no-such-bucket/out", tiny_model),
        env=s3_server.env(),
    )
    code, err = finish(proc)
    assert code == ExitCode.PERMANENT and "no-such-bucket" in err


@pytest.mark.parametrize("model", ["hf://llmbatch-test/does-not-exist", "/nonexistent/model"])
def test_unloadable_model_exits_permanent(tmp_path: Path, model: str) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(2))
    write_plan(str(source), str(tmp_path / "out"))
    proc = runner(*run_args(source, tmp_path / "out", model), env={"HF_HUB_OFFLINE": "1"})
    code, err = finish(proc)
    assert code == ExitCode.PERMANENT
    assert "cannot be loaded" in err or "no config.json" in err


def test_past_deadline_expires_everything_without_loading_the_model(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [*chat_batch(5), b"{bad"])
    out = tmp_path / "out"
    write_plan(str(source), str(out))
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    # The model path does not exist: an expired shard must not even try to load it.
    code, err = finish(runner(*run_args(source, out, "/nonexistent", "--deadline", past)))
    assert code == ExitCode.EXPIRED, err
    code, err = finish(
        runner("finalize", "--input", str(source), "--output", str(out), "--reason", "expired")
    )
    assert code == ExitCode.OK, err
    errors = read_jsonl((out / "errors.jsonl").read_bytes())
    assert sorted(e["error"]["code"] for e in errors) == ["batch_expired"] * 5 + ["invalid_request"]


def _part_records(out: Path) -> list[Record]:
    return [
        decode_record(raw)
        for path in sorted((out / "parts").glob("chunk-*/part-*.jsonl"))
        for raw in path.read_bytes().splitlines()
        if raw.strip()
    ]


@pytest.mark.slow
def test_embeddings_batch(tmp_path: Path, tiny_model: Path) -> None:
    lines = [
        json.dumps(
            {
                "custom_id": f"e{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": NAME, "input": text},
            }
        ).encode()
        for i, text in enumerate(["one line", ["two", "inputs"], [5, 6, 7]])
    ]
    lines.append(
        json.dumps(
            {
                "custom_id": "b64",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": NAME, "input": "x", "encoding_format": "base64"},
            }
        ).encode()
    )
    lines.append(
        json.dumps(
            {
                "custom_id": "too-long",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": NAME, "input": "word " * 2000},
            }
        ).encode()
    )
    source = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out"
    write_plan(str(source), str(out), endpoint=Endpoint.EMBEDDINGS)
    code, err = finish(runner(*run_args(source, out, tiny_model, "--endpoint", "/v1/embeddings")))
    assert code == ExitCode.OK, err[-3000:]
    code, err = finish(runner("finalize", "--input", str(source), "--output", str(out)))
    assert code == ExitCode.OK, err
    rows = {r["custom_id"]: r for r in read_jsonl((out / "output.jsonl").read_bytes())}
    errors = read_jsonl((out / "errors.jsonl").read_bytes())
    assert [e["custom_id"] for e in errors] == ["too-long"]
    assert errors[0]["response"]["status_code"] == 400
    one = rows["e0"]["response"]["body"]
    assert one["object"] == "list" and one["model"] == NAME
    assert len(one["data"]) == 1 and len(one["data"][0]["embedding"]) == 128
    assert one["usage"]["prompt_tokens"] > 0
    assert [d["index"] for d in rows["e1"]["response"]["body"]["data"]] == [0, 1]
    assert rows["e2"]["response"]["body"]["usage"]["prompt_tokens"] == 3
    assert isinstance(rows["b64"]["response"]["body"]["data"][0]["embedding"], str)


@pytest.mark.slow
def test_llmbatch_run_command(tmp_path: Path, tiny_model: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [*chat_batch(4, max_tokens=3), b"{bad"])
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ENABLE_V1")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmbatch.cli.main",
            "run",
            str(source),
            "--output",
            f"file://{out}",
            "--model",
            str(tiny_model),
            "--served-model-name",
            NAME,
            "--engine-args",
            ENGINE_ARGS,
        ],
        env=env,
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert summary["requestCounts"] == {"total": 5, "completed": 4, "failed": 1}
    assert summary["usage"]["completionTokens"] == 12
    assert len(read_jsonl((out / "output.jsonl").read_bytes())) == 4
    assert json.loads((out / "manifest.json").read_bytes())["requestCounts"]["total"] == 5


def test_llmbatch_run_missing_input(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmbatch.cli.main",
            "run",
            str(tmp_path / "none.jsonl"),
            "--output",
            str(tmp_path / "out"),
            "--model",
            str(tmp_path),
        ],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == ExitCode.PERMANENT
    assert "does not exist" in proc.stderr.decode()
