"""Backend ray: the glue between the shard loop and Ray Data LLM (no Ray needed), and the real
thing through ``llmbatch-runner run --backend ray`` on the tiny model against backend vllm."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.timefmt import parse_time
from llmbatch.runner import ray_backend
from llmbatch.runner.engine import Failed, Finished
from llmbatch.runner.ray_backend import Pending, RayEngine, outcome, sampling_arguments
from llmbatch.runner.ray_pipeline import Ended, RaySettings, engine_concurrency
from llmbatch.runner.sampling import RequestError, build_sampling_params
from tests.runner.batches import by_custom_id, chat_batch, chat_line, read_jsonl, write_lines

NAME = "tiny-qwen"


# The glue, no Ray ----------------------------------------------------------------------------


def test_engine_concurrency_is_gpus_over_tensor_parallel_size() -> None:
    assert engine_concurrency(8, {"tensor_parallel_size": 2}) == 4
    assert engine_concurrency(1, {}) == 1
    assert engine_concurrency(1, {"tensor_parallel_size": 4}) == 1


def test_sampling_arguments_carry_the_request_and_refuse_what_a_row_cannot() -> None:
    body = {"max_tokens": 7, "temperature": 0, "stop": ["x"], "seed": 3}
    arguments = sampling_arguments(build_sampling_params(body, {}, chat=True))
    assert arguments["max_tokens"] == 7
    assert arguments["temperature"] == 0
    assert arguments["stop"] == ["x"]
    assert arguments["seed"] == 3
    json.dumps(arguments)  # travels as JSON
    for refused in ({"n": 2}, {"logprobs": True}, {"logit_bias": {"5": 1.0}}):
        with pytest.raises(RequestError, match="backend ray"):
            sampling_arguments(build_sampling_params(refused, {}, chat=True))


def test_structured_output_travels_as_a_dict() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    arguments = sampling_arguments(build_sampling_params(body, {}, chat=True))
    assert arguments["structured_outputs"]["json"] == schema


def test_a_row_becomes_a_chat_completion_or_the_lines_error() -> None:
    pending = Pending(key=5, response_id="abc", max_tokens=3)
    row = {
        "key": 5,
        "generated_text": "hi there",
        "generated_tokens": [7, 8, 9],
        "prompt_token_ids": [1, 2, 3, 4],
        "num_input_tokens": 4,
        "__inference_error__": "",
    }
    done = outcome(row, pending, NAME, 512)
    assert isinstance(done, Finished)
    assert (done.key, done.prompt_tokens, done.completion_tokens) == (5, 4, 3)
    assert done.body["id"] == "chatcmpl-abc"
    assert done.body["choices"][0]["message"]["content"] == "hi there"
    assert done.body["choices"][0]["finish_reason"] == "length"
    assert done.body["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    stopped = outcome({**row, "generated_tokens": [7]}, pending, NAME, 512)
    assert isinstance(stopped, Finished)
    assert stopped.body["choices"][0]["finish_reason"] == "stop"
    refused = outcome({**row, "__inference_error__": "too long"}, pending, NAME, 512)
    assert refused == Failed(5, 400, "too long")


def test_generation_defaults_come_from_the_model(tmp_path: Path) -> None:
    (tmp_path / "generation_config.json").write_text(json.dumps({"temperature": 0.6, "x": 1}))
    assert ray_backend.generation_defaults(tmp_path, {}) == {"temperature": 0.6}
    assert ray_backend.generation_defaults(tmp_path, {"generation_config": "vllm"}) == {}
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    assert ray_backend.max_model_len(tmp_path, {}) == 2048
    assert ray_backend.max_model_len(tmp_path, {"max_model_len": 512}) == 512


class _Run:
    """A DatasetRun stand-in: answers every row at once (echoing its key as text)."""

    runs: list[list[dict[str, Any]]] = []

    def __init__(self, processor: Any, rows: list[dict[str, Any]]) -> None:
        self.results: queue.Queue[dict[str, Any] | Ended] = queue.Queue()
        _Run.runs.append(rows)
        for row in rows:
            answer = {"key": row["key"], "generated_text": str(row["key"])}
            self.results.put({**answer, "generated_tokens": [1], "prompt_token_ids": [1]})
        self.results.put(Ended())

    def abandon(self) -> None:
        pass


def _engine(monkeypatch: pytest.MonkeyPatch, stopping: list[bool]) -> RayEngine:
    monkeypatch.setattr(ray_backend, "DatasetRun", _Run)
    _Run.runs = []
    engine = RayEngine(lambda: Path("/nowhere"), NAME, RaySettings(), lambda: stopping[0])
    engine._processor = object()  # started: no Ray in this test
    return engine


def test_buffered_requests_run_as_one_dataset_when_none_is_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = _engine(monkeypatch, [False])
    messages = [{"role": "user", "content": "hi"}]
    for key in (3, 4):
        engine.submit(key, f"id{key}", {"messages": messages, "max_tokens": 4})
    assert engine.in_flight() == 2
    finished = engine.step()
    assert sorted(o.key for o in finished) == [3, 4]
    assert len(_Run.runs) == 1 and engine.in_flight() == 0
    assert json.loads(_Run.runs[0][0]["sampling"])["max_tokens"] == 4
    with pytest.raises(RequestError, match="messages"):
        engine.submit(9, "id9", {"messages": []})


def test_a_stopping_shard_starts_no_dataset_and_hands_the_buffer_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopping = [False]
    engine = _engine(monkeypatch, stopping)
    engine.submit(1, "a", {"messages": [{"role": "user", "content": "x"}]})
    stopping[0] = True
    assert engine.in_flight() == 0  # nothing running: the shutdown does not wait
    assert engine.step() == []
    assert _Run.runs == []
    assert engine.abort_all() == [1]


# The real thing: Ray + vLLM on the tiny model, through the runner's command line -------------

ENGINE_ARGS = json.dumps({"max_model_len": 512})


def _cli(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "llmbatch.runner.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _done(proc: subprocess.Popen[bytes], timeout: float = 900) -> int:
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode not in (0, ExitCode.CANCELLED):
        print(err.decode(errors="replace")[-4000:])
    return proc.returncode


def _plan(source: Path, out: Path, model: Path, chunk_lines: int) -> None:
    args = ["--input", str(source), "--output", str(out), "--model", str(model)]
    plan = _cli("plan", *args, "--served-model-name", NAME, "--chunk-lines", str(chunk_lines))
    assert _done(plan) == 0


def _run(source: Path, out: Path, model: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = ["--input", str(source), "--output", str(out), "--model", str(model)]
    return _cli(
        "run", *args, "--served-model-name", NAME, "--engine-args", ENGINE_ARGS,
        "--metrics-port", "0", *extra,
    )  # fmt: skip


def _finalize(source: Path, out: Path) -> tuple[dict[Any, Any], dict[Any, Any]]:
    assert _done(_cli("finalize", "--input", str(source), "--output", str(out))) == 0
    output = by_custom_id(read_jsonl((out / "output.jsonl").read_bytes()))
    errors = by_custom_id(read_jsonl((out / "errors.jsonl").read_bytes()))
    return output, errors


def _content(rows: dict[Any, Any]) -> dict[Any, str]:
    return {
        cid: row["response"]["body"]["choices"][0]["message"]["content"]
        for cid, row in rows.items()
    }


def _wait_for_a_committed_chunk(proc: subprocess.Popen[bytes], out: Path) -> None:
    deadline = time.monotonic() + 900
    while not list((out / "parts").glob("chunk-*/part-*.jsonl")):
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "no chunk committed in time"
        time.sleep(0.2)


def _input(tmp_path: Path) -> Path:
    lines = chat_batch(10)
    # Longer than the engine's 512 tokens but not than the model's 2048 the plan checks: vLLM
    # refuses it inside Ray (a per-row error).
    lines.append(chat_line("too-long", "word " * 900, max_tokens=4))
    lines.append(chat_line("two-choices", "hello", n=2, max_tokens=4))
    return write_lines(tmp_path / "in.jsonl", lines)


@pytest.mark.slow
def test_ray_backend_answers_like_vllm_per_custom_id(tmp_path: Path, tiny_model: Path) -> None:
    pytest.importorskip("ray.data.llm", reason="the ray extra (pip install .[ray]) is missing")
    source = _input(tmp_path)
    timings: dict[str, float] = {}
    results = {}
    for backend in ("ray", "vllm"):
        out = tmp_path / backend
        _plan(source, out, tiny_model, chunk_lines=8)
        started = time.monotonic()
        assert _done(_run(source, out, tiny_model, "--backend", backend)) == 0
        timings[backend] = time.monotonic() - started
        results[backend] = _finalize(source, out)
    print(f"run wall time: ray {timings['ray']:.1f}s, vllm {timings['vllm']:.1f}s")
    (ray_out, ray_err), (vllm_out, vllm_err) = results["ray"], results["vllm"]
    answered = {f"req-{i}" for i in range(10)}
    assert set(ray_out) == answered
    assert _content(ray_out) == _content({cid: vllm_out[cid] for cid in answered})
    for cid, row in ray_out.items():
        assert row["response"]["body"]["usage"] == vllm_out[cid]["response"]["body"]["usage"]
    # The over-long prompt is refused by vLLM under both backends (inside Ray: a row error).
    assert set(vllm_err) == {"too-long"}
    assert set(ray_err) == {"too-long", "two-choices"}
    assert "maximum context length" in ray_err["too-long"]["response"]["body"]["error"]["message"]
    # n=2 has no Ray Data form (one completion per row): refused per line, not half answered.
    assert "two-choices" in vllm_out
    assert "backend ray" in ray_err["two-choices"]["response"]["body"]["error"]["message"]
    progress = json.loads((tmp_path / "ray" / "progress" / "shard-0.json").read_text())
    assert progress["state"] == "done"
    leases = sorted((tmp_path / "ray" / "leases").glob("chunk-*.json"))
    assert len(leases) == 2 and all(json.loads(p.read_text())["state"] == "done" for p in leases)


@pytest.mark.slow
def test_sigkill_mid_run_then_a_new_attempt_finishes_every_line_once(
    tmp_path: Path, tiny_model: Path
) -> None:
    pytest.importorskip("ray.data.llm", reason="the ray extra (pip install .[ray]) is missing")
    source = write_lines(tmp_path / "in.jsonl", chat_batch(12))
    out = tmp_path / "out"
    _plan(source, out, tiny_model, chunk_lines=4)
    lease = ("--lease-seconds", "4", "--renew-seconds", "1")
    first = _run(source, out, tiny_model, "--backend", "ray", *lease)
    _wait_for_a_committed_chunk(first, out)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert _done(_run(source, out, tiny_model, "--backend", "ray", *lease)) == 0
    output, errors = _finalize(source, out)
    assert set(output) == {f"req-{i}" for i in range(12)} and not errors
    lines = (out / "output.jsonl").read_bytes().splitlines()
    assert len(lines) == 12  # nothing twice


@pytest.mark.slow
def test_sigterm_commits_what_finished_and_exits_44_then_the_rest_runs(
    tmp_path: Path, tiny_model: Path
) -> None:
    pytest.importorskip("ray.data.llm", reason="the ray extra (pip install .[ray]) is missing")
    source = write_lines(tmp_path / "in.jsonl", chat_batch(12))
    out = tmp_path / "out"
    _plan(source, out, tiny_model, chunk_lines=4)
    first = _run(source, out, tiny_model, "--backend", "ray", "--grace-period", "30")
    _wait_for_a_committed_chunk(first, out)
    stopped = time.monotonic()
    first.send_signal(signal.SIGTERM)  # Ray's own handler (sys.exit) must not be the one
    assert _done(first, timeout=120) == ExitCode.CANCELLED
    print(f"SIGTERM to exit: {time.monotonic() - stopped:.1f} s")
    progress = json.loads((out / "progress" / "shard-0.json").read_text())
    assert progress["state"] == "cancelled"
    # The open chunks' leases were released (expired at once), not left to run out.
    leases = [json.loads(p.read_text()) for p in (out / "leases").glob("chunk-*.json")]
    held = [lease for lease in leases if lease["state"] == "held"]
    now = datetime.now(UTC)
    assert all((parse_time(lease["expiresAt"]) or now) <= now for lease in held), held
    assert _done(_run(source, out, tiny_model, "--backend", "ray")) == 0
    output, errors = _finalize(source, out)
    assert set(output) == {f"req-{i}" for i in range(12)} and not errors
    assert len((out / "output.jsonl").read_bytes().splitlines()) == 12


@pytest.mark.slow
def test_a_past_deadline_exits_43_before_ray_starts(tmp_path: Path, tiny_model: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(3))
    out = tmp_path / "out"
    _plan(source, out, tiny_model, chunk_lines=4)
    started = time.monotonic()
    run = _run(source, out, tiny_model, "--backend", "ray", "--deadline", "2020-01-01T00:00:00Z")
    assert _done(run) == ExitCode.EXPIRED
    assert time.monotonic() - started < 120
    progress = json.loads((out / "progress" / "shard-0.json").read_text())
    assert progress["state"] == "expired"
