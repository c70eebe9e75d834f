"""``llmbatch-runner`` as the Job runs it: a process, its exit codes, SIGTERM and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.exitcodes import ExitCode
from llmbatch.runner.records import Record, decode_record
from tests.runner.batches import chat_batch, read_jsonl, write_lines

NAME = "tiny-qwen"
ENGINE_ARGS = json.dumps({"max_model_len": 512})


def _runner(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "llmbatch.runner.cli", *args]
    full_env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", **(env or {})}
    return subprocess.Popen(
        command,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _run_args(source: Path | str, out: Path | str, model: Path | str, *extra: str) -> list[str]:
    return [
        "run",
        "--input",
        str(source),
        "--output",
        str(out),
        "--model",
        str(model),
        "--served-model-name",
        NAME,
        "--engine-args",
        ENGINE_ARGS,
        "--metrics-port",
        "0",
        *extra,
    ]


def _finish(proc: subprocess.Popen[bytes], timeout: float = 240) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode(errors="replace")


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"runner exited {proc.returncode} before the condition held: "
                f"{_finish(proc)[1][-3000:]}"
            )
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("condition not reached in time")


def test_missing_input_exits_permanent(tmp_path: Path, tiny_model: Path) -> None:
    code, err = _finish(_runner(*_run_args(tmp_path / "nope.jsonl", tmp_path / "out", tiny_model)))
    assert code == ExitCode.PERMANENT
    assert "nope.jsonl does not exist" in err


def test_missing_bucket_exits_permanent(tmp_path: Path, tiny_model: Path, s3_server: Any) -> None:
    proc = _runner(
        *_run_args("s3://no-such-bucket/in.jsonl", "s3://no-such-bucket/out", tiny_model),
        env=s3_server.env(),
    )
    code, err = _finish(proc)
    assert code == ExitCode.PERMANENT and "no-such-bucket" in err


@pytest.mark.parametrize("model", ["hf://llmbatch-test/does-not-exist", "/nonexistent/model"])
def test_unloadable_model_exits_permanent(tmp_path: Path, model: str) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(2))
    proc = _runner(*_run_args(source, tmp_path / "out", model), env={"HF_HUB_OFFLINE": "1"})
    code, err = _finish(proc)
    assert code == ExitCode.PERMANENT
    assert "cannot be loaded" in err or "no config.json" in err


def test_past_deadline_expires_everything_without_loading_the_model(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [*chat_batch(5), b"{bad"])
    out = tmp_path / "out"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    # The model path does not exist: an expired shard must not even try to load it.
    code, err = _finish(_runner(*_run_args(source, out, "/nonexistent", "--deadline", past)))
    assert code == ExitCode.EXPIRED, err
    code, err = _finish(
        _runner("finalize", "--input", str(source), "--output", str(out), "--reason", "expired")
    )
    assert code == ExitCode.OK, err
    errors = read_jsonl((out / "errors.jsonl").read_bytes())
    assert sorted(e["error"]["code"] for e in errors) == ["batch_expired"] * 5 + ["invalid_request"]


def _part_records(out: Path) -> list[Record]:
    return [
        decode_record(raw)
        for path in sorted((out / "parts").glob("shard-*/part-*.jsonl"))
        for raw in path.read_bytes().splitlines()
        if raw.strip()
    ]


@pytest.mark.slow
def test_sigterm_commits_finished_work_and_leaves_the_rest_to_finalize(
    tmp_path: Path, tiny_model: Path
) -> None:
    """SIGTERM may be a preemption: the shard must not record its unfinished lines (the Job's
    next pod would skip them); finalize --reason cancelled records them if the batch ends."""
    total = 1000  # far more than the tiny model runs before the SIGTERM and the grace
    source = write_lines(tmp_path / "in.jsonl", chat_batch(total, max_tokens=200, ignore_eos=True))
    out = tmp_path / "out"
    proc = _runner(
        *_run_args(
            source,
            out,
            tiny_model,
            "--grace-period",
            "4",
            "--checkpoint-requests",
            "10",
            "--max-in-flight",
            "16",
        )
    )
    part_dir = out / "parts" / "shard-0"
    _wait_for(lambda: any(part_dir.glob("part-*.jsonl")), proc, 180)
    proc.send_signal(signal.SIGTERM)
    code, err = _finish(proc, timeout=60)
    assert code == ExitCode.CANCELLED, err[-3000:]
    assert json.loads((out / "progress" / "shard-0.json").read_bytes())["state"] == "cancelled"
    committed = _part_records(out)
    assert b"batch_cancelled" not in b"".join(r.line for r in committed)
    finished = {r.lineno for r in committed}
    assert 10 <= len(finished) < total, "the SIGTERM must land mid-run"
    code, err = _finish(
        _runner("finalize", "--input", str(source), "--output", str(out), "--reason", "cancelled")
    )
    assert code == ExitCode.OK, err
    output = read_jsonl((out / "output.jsonl").read_bytes())
    errors = read_jsonl((out / "errors.jsonl").read_bytes())
    assert len(output) + len(errors) == total
    assert len(output) == len(finished)
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    # Exactly the lines no part holds are cancelled, by their input custom_ids.
    lines = read_jsonl(source.read_bytes())
    unfinished = {lines[n - 1]["custom_id"] for n in range(1, total + 1) if n not in finished}
    assert {e["custom_id"] for e in errors} == unfinished


@pytest.mark.slow
def test_sigkill_then_restart_is_exactly_once(tmp_path: Path, tiny_model: Path) -> None:
    total, per_part = 120, 10
    source = write_lines(tmp_path / "in.jsonl", chat_batch(total, max_tokens=32, ignore_eos=True))
    out = tmp_path / "out"
    part_dir = out / "parts" / "shard-0"
    args = _run_args(
        source, out, tiny_model, "--checkpoint-requests", str(per_part), "--max-in-flight", "16"
    )
    proc = _runner(*args)
    _wait_for(lambda: len(list(part_dir.glob("part-*.jsonl"))) >= 3, proc, 180)
    proc.kill()
    proc.wait(timeout=30)
    # Only whole parts count (an upload cut by the kill leaves a temporary file, not a part).
    committed = sum(len(p.read_bytes().splitlines()) for p in part_dir.glob("part-*.jsonl"))
    assert committed < total, "the batch finished before the kill; make it longer"

    code, err = _finish(_runner(*args))
    assert code == ExitCode.OK, err[-3000:]
    resumed = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    recovered = [r for r in resumed if r.get("message", "").startswith("resuming:")]
    assert recovered and recovered[0]["message"].startswith(f"resuming: {committed} lines")
    code, err = _finish(_runner("finalize", "--input", str(source), "--output", str(out)))
    assert code == ExitCode.OK, err
    output = read_jsonl((out / "output.jsonl").read_bytes())
    ids = [row["custom_id"] for row in output]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(total)) and len(set(ids)) == total
    # Records committed before the kill are never redone: the second attempt's parts hold
    # exactly the lines the first attempt had not committed.
    all_records = sum(len(p.read_bytes().splitlines()) for p in part_dir.glob("part-*.jsonl"))
    assert all_records == total


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
    code, err = _finish(
        _runner(*_run_args(source, out, tiny_model, "--endpoint", "/v1/embeddings"))
    )
    assert code == ExitCode.OK, err[-3000:]
    code, err = _finish(_runner("finalize", "--input", str(source), "--output", str(out)))
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
