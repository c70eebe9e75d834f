"""``llmbatch-runner plan``: exit codes (0, 42 permanent, 1 retryable), and the plan step against
S3 (moto): ranges that read back the runnable lines, a missing object or bucket failing fast."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.layout import OutputLayout
from llmbatch.runner import cli
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.plan import read_plan, step
from llmbatch.storage import StorageSettings, get_store
from tests.runner.batches import chat_line, write_lines
from tests.runner.plan_check import plan_file

LINES = [chat_line("a", "one"), b"", b"[1]", chat_line("b", "two", max_tokens=4)]


def plan_args(input_uri: str, output_uri: str, *extra: str) -> list[str]:
    return [
        "plan",
        "--input",
        input_uri,
        "--output",
        output_uri,
        "--model",
        "hf://example/model",
        "--served-model-name",
        "tiny-qwen",
        *extra,
    ]


def test_plan_command_writes_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "in.jsonl", LINES)
    out = tmp_path / "out"
    assert cli.main(plan_args(str(path), str(out), "--chunk-lines", "1")) == ExitCode.OK
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"total": 3, "chunks": 2}
    summary = read_plan(get_store(str(out)), OutputLayout(str(out)))
    assert summary is not None
    assert (summary.runnable, summary.invalid, summary.chunk_lines) == (2, 1, 1)


def test_plan_command_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "in.jsonl", LINES)
    missing = str(tmp_path / "missing.jsonl")
    assert cli.main(plan_args(missing, str(tmp_path / "o1"))) == ExitCode.PERMANENT
    assert missing in capsys.readouterr().err
    bad = plan_args(str(path), str(tmp_path / "o2"), "--chunk-lines", "0")
    assert cli.main(bad) == ExitCode.PERMANENT
    bad_args = plan_args(str(path), str(tmp_path / "o3"), "--engine-args", "[1]")
    assert cli.main(bad_args) == ExitCode.PERMANENT

    def flaky(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("S3 went away")

    monkeypatch.setattr(step.Planner, "plan", flaky)
    assert cli.main(plan_args(str(path), str(tmp_path / "o4"))) == ExitCode.RETRYABLE


def test_plan_on_s3(s3_settings: StorageSettings, s3_bucket: str) -> None:
    data = b"".join(line + b"\n" for line in LINES)
    input_uri = f"s3://{s3_bucket}/in/requests.jsonl"
    store = get_store(input_uri, s3_settings)
    store.write_bytes(input_uri, data)
    planned = plan_file(input_uri, f"s3://{s3_bucket}/out/", settings=s3_settings)
    assert (planned.summary.total, planned.summary.runnable) == (3, 2)
    assert planned.summary.input_bytes == len(data)
    chunks = planned.chunk_lines(data)
    assert [[number for number, _ in chunk] for chunk in chunks] == [[1, 4]]
    assert [(r.lineno, r.kind) for r in planned.error_records()] == [(3, 1)]
    assert store.exists(f"s3://{s3_bucket}/out/plan/plan.json")
    again = plan_file(input_uri, f"s3://{s3_bucket}/out/", settings=s3_settings)
    assert again.summary == planned.summary


def test_missing_object_and_bucket_on_s3(s3_settings: StorageSettings, s3_bucket: str) -> None:
    missing = f"s3://{s3_bucket}/in/none.jsonl"
    with pytest.raises(PermanentError, match=re.escape(missing)):
        plan_file(missing, f"s3://{s3_bucket}/out/", settings=s3_settings)
    no_bucket = "s3://no-such-bucket-h13a/in.jsonl"
    with pytest.raises(PermanentError, match=re.escape(no_bucket)):
        plan_file(no_bucket, f"s3://{s3_bucket}/out2/", settings=s3_settings)
