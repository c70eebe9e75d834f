"""validate, submit --dry-run, estimate and the results join: the commands that need no cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmbatch.api.batchjob import BatchJob
from llmbatch.api.tokens import completion_budget, heuristic_tokens
from llmbatch.cli.cmd_results import download_results, join_results
from llmbatch.cli.cmd_submit import batch_name
from tests.cli.app import ECOSYSTEM_COMMANDS, cli_app

runner = CliRunner()


def chat_line(custom_id: str, content: str = "Hello there", **extra: Any) -> str:
    body = {"model": "tiny-qwen", "messages": [{"role": "user", "content": content}], **extra}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    )


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(chat_line(f"r{i}", max_tokens=8) for i in range(3)) + "\n")
    return path


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.jsonl"
    lines = [
        chat_line("a"),
        "{not json",
        "",
        chat_line("a"),
        json.dumps({"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", "body": {}}),
        chat_line("d"),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def invoke(*args: str) -> Any:
    return runner.invoke(cli_app(), list(args))


@pytest.mark.parametrize("command", ECOSYSTEM_COMMANDS)
def test_help_shows_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"llmbatch {command}" in result.output


def test_validate_good_file(good_file: Path) -> None:
    result = invoke("validate", str(good_file))
    assert result.exit_code == 0, result.output
    assert "3 valid, 0 invalid" in result.output
    assert "tiny-qwen (3)" in result.output


def test_validate_reports_line_numbers_and_rules(bad_file: Path) -> None:
    result = invoke("validate", str(bad_file))
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(str(bad_file))]
    assert [line.split(":")[1:3] for line in lines] == [
        ["2", " invalid_json"],
        ["4", " duplicate_custom_id"],
        ["5", " invalid_method"],
    ]


def test_validate_json_output(bad_file: Path) -> None:
    result = invoke("validate", str(bad_file), "-o", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] == 2
    assert report["invalid"] == 3
    assert [e["line"] for e in report["errors"]] == [2, 4, 5]
    assert report["errors"][1]["customId"] == "a"


def test_validate_max_lines_and_endpoint(good_file: Path) -> None:
    result = invoke("validate", str(good_file), "--max-lines", "2", "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"][0]["rule"] == "too_many_lines"
    result = invoke("validate", str(good_file), "--endpoint", "/v1/embeddings", "-o", "json")
    assert {e["rule"] for e in json.loads(result.stdout)["errors"]} == {"mixed_url"}
    assert invoke("validate", str(good_file), "--endpoint", "/v2/nope").exit_code == 2


SUBMIT = ("--model", "tiny-qwen", "--model-source", "/models/tiny", "--output", "s3://llmbatch/r1/")


def test_submit_dry_run_prints_a_valid_batchjob(good_file: Path) -> None:
    result = invoke(
        "submit",
        str(good_file),
        *SUBMIT,
        "--parallelism",
        "2",
        "--completion-window",
        "6h",
        "--namespace",
        "team-a",
        "--s3-endpoint",
        "http://127.0.0.1:9000",
        "--storage-endpoint",
        "http://minio.minio:9000",
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    obj = yaml.safe_load(result.stdout)
    job = BatchJob.model_validate(obj)
    assert job.metadata["namespace"] == "team-a"
    assert job.metadata["name"].startswith("requests-")
    assert job.spec.input == "s3://llmbatch/r1/input.jsonl"
    assert job.spec.output == "s3://llmbatch/r1/"
    assert job.spec.parallelism == 2
    assert job.spec.completion_window == "6h"
    assert job.spec.storage.endpoint == "http://minio.minio:9000"
    assert job.spec.storage.secret_ref is not None
    assert job.spec.storage.secret_ref.name == "llmbatch-s3"
    assert obj["metadata"]["annotations"]["llmbatch.io/input-sha256"]


def test_submit_dry_run_json_and_name(good_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    result = invoke(
        "submit",
        str(good_file),
        *SUBMIT,
        "--name",
        "nightly",
        "--dry-run",
        "--input-uri",
        "s3://llmbatch/in/x.jsonl",
        "--secret",
        "",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert obj["metadata"]["name"] == "nightly"
    # The upload endpoint (env) is this machine's view; the pods get the operator's default.
    assert "endpoint" not in obj["spec"].get("storage", {})
    assert obj["spec"]["input"] == "s3://llmbatch/in/x.jsonl"
    assert "secretRef" not in obj["spec"].get("storage", {})


def test_submit_refuses_an_invalid_file(bad_file: Path) -> None:
    result = invoke("submit", str(bad_file), *SUBMIT, "--dry-run")
    assert result.exit_code == 1
    assert "first at line 2" in result.output


def test_submit_rejects_a_bad_model_source(good_file: Path) -> None:
    result = invoke(
        "submit",
        str(good_file),
        "--model",
        "m",
        "--model-source",
        "ftp://x",
        "--output",
        "s3://llmbatch/r/",
        "--dry-run",
    )
    assert result.exit_code == 1
    assert "model.source" in result.output


def test_submit_warns_about_lines_for_another_model(good_file: Path) -> None:
    result = invoke(
        "submit",
        str(good_file),
        "--model",
        "other",
        "--model-source",
        "/m",
        "--output",
        "s3://llmbatch/r/",
        "--dry-run",
    )
    assert result.exit_code == 0
    assert "model_not_found" in result.output


def test_batch_name_is_a_kubernetes_name() -> None:
    assert batch_name(Path("My Requests_2026.jsonl"), "abcdef0123") == "my-requests-2026-abcdef01"
    assert batch_name(Path("___.jsonl"), "0" * 64) == "batch-00000000"


def test_estimate_heuristic_is_labelled(good_file: Path) -> None:
    result = invoke("estimate", str(good_file), "--price-in", "1", "--price-out", "2", "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["requests"] == 3
    assert report["promptTokenMethod"].startswith("heuristic")
    assert report["completionTokensUpperBound"] == 24
    expected = (report["promptTokens"] * 1 + 24 * 2) / 1_000_000
    assert report["costUpperBound"] == pytest.approx(expected)


def test_estimate_non_local_source_falls_back(good_file: Path) -> None:
    result = invoke("estimate", str(good_file), "--model-source", "hf://Qwen/Qwen2.5-0.5B")
    assert result.exit_code == 0
    assert "heuristic" in result.output


def test_heuristic_and_budget_rules() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 40}], "n": 2}
    assert heuristic_tokens(body) == 10 + 4
    assert completion_budget(body, "/v1/chat/completions", 100) == (200, True)
    assert completion_budget({"max_completion_tokens": 7}, "/v1/chat/completions", 100) == (
        7,
        False,
    )
    assert completion_budget({"input": "x"}, "/v1/embeddings", 100) == (0, False)
    assert heuristic_tokens({"prompt": [1, 2, 3]}) == 3


def test_estimate_with_the_model_tokenizer(good_file: Path, tiny_model: Path) -> None:
    result = invoke("estimate", str(good_file), "--model-source", str(tiny_model), "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["promptTokenMethod"] == f"tokenizer of {tiny_model}"
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(str(tiny_model))
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello there"}], tokenize=False, add_generation_prompt=True
    )
    per_line = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert report["promptTokens"] == 3 * per_line


def result_line(custom_id: str, ok: bool) -> str:
    if ok:
        return json.dumps(
            {
                "id": f"batch_req_{custom_id}",
                "custom_id": custom_id,
                "error": None,
                "response": {
                    "status_code": 200,
                    "request_id": "x",
                    "body": {"choices": [{"message": {"content": "hi"}}]},
                },
            }
        )
    return json.dumps(
        {
            "id": f"batch_req_{custom_id}",
            "custom_id": custom_id,
            "response": None,
            "error": {"code": "batch_expired", "message": "deadline", "line": 2},
        }
    )


def test_join_results_keeps_input_order(tmp_path: Path) -> None:
    output = tmp_path / "output.jsonl"
    errors = tmp_path / "errors.jsonl"
    output.write_text(result_line("c", True) + "\n" + result_line("a", True) + "\n")
    errors.write_text(result_line("b", False) + "\n")
    inputs = [chat_line(c).encode() for c in ("a", "b", "c", "d")]
    joined = tmp_path / "joined.jsonl"
    assert join_results(iter(inputs), [output, errors], joined) == 4
    rows = [json.loads(line) for line in joined.read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == ["a", "b", "c", "d"]
    assert rows[0]["status_code"] == 200 and rows[0]["error"] is None
    assert rows[0]["request"]["messages"][0]["content"] == "Hello there"
    assert rows[1]["error"]["code"] == "batch_expired" and rows[1]["response"] is None
    assert rows[3]["error"]["code"] == "missing"


def test_download_results_from_a_file_uri(tmp_path: Path) -> None:
    out = tmp_path / "bucket" / "out"
    out.mkdir(parents=True)
    (out / "output.jsonl").write_text(result_line("a", True) + "\n")
    (out / "manifest.json").write_text("{}")
    source = tmp_path / "in.jsonl"
    source.write_text(chat_line("a") + "\n")
    got = download_results(f"file://{out}/", f"file://{source}", tmp_path / "dl", None, join=True)
    assert sorted(got.files) == ["manifest.json", "output.jsonl"]
    assert got.missing == ["errors.jsonl"]
    assert got.joined_lines == 1
    assert (tmp_path / "dl" / "output.jsonl").read_text() == (out / "output.jsonl").read_text()
