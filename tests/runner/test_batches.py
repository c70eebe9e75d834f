"""Whole batches through the runner with real vLLM (the tiny model, in this process)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.lines import Endpoint, ErrorCode, OutputLine
from llmbatch.runner.finalize import FinalizeConfig, finalize
from llmbatch.runner.local import run_local
from llmbatch.runner.run import RunConfig, StopSignal, run_shard
from llmbatch.storage import StorageSettings, get_store
from tests.runner.batches import (
    by_custom_id,
    chat_batch,
    chat_line,
    completion_line,
    read_jsonl,
    write_lines,
)
from tests.runner.plans import write_plan

pytestmark = pytest.mark.slow

NAME = "tiny-qwen"


def _results(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        read_jsonl((out / "output.jsonl").read_bytes()),
        read_jsonl((out / "errors.jsonl").read_bytes()),
    )


def _check_chat_line(row: dict[str, Any]) -> None:
    """The OpenAI batch output line, field for field."""
    assert set(row) == {"id", "custom_id", "response", "error"}
    OutputLine.model_validate(row)
    assert row["id"].startswith("batch_req_") and row["error"] is None
    response = row["response"]
    assert set(response) == {"status_code", "request_id", "body"}
    assert response["status_code"] == 200 and response["request_id"]
    body = response["body"]
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == NAME and isinstance(body["created"], int)
    for index, choice in enumerate(body["choices"]):
        assert choice["index"] == index
        assert choice["message"]["role"] == "assistant"
        assert isinstance(choice["message"]["content"], str)
        assert choice["finish_reason"] in ("stop", "length")
        assert "logprobs" in choice
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


def test_chat_batch_writes_openai_lines_usage_and_manifest(
    tmp_path: Path, chat_engine: Any
) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(6, max_tokens=5))
    out = tmp_path / "out"
    manifest = run_local(f"file://{source}", f"file://{out}", "unused", NAME, engine=chat_engine)
    output, errors = _results(out)
    assert errors == []
    assert sorted(r["custom_id"] for r in output) == [f"req-{i}" for i in range(6)]
    for row in output:
        _check_chat_line(row)
        assert row["response"]["body"]["usage"]["completion_tokens"] == 5
    assert manifest["requestCounts"] == {"total": 6, "completed": 6, "failed": 0}
    assert manifest["usage"] == {
        "promptTokens": sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in output),
        "completionTokens": 30,
    }
    assert (
        manifest["sha256"]["output"]
        == hashlib.sha256((out / "output.jsonl").read_bytes()).hexdigest()
    )
    assert manifest["sha256"]["input"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest["model"]["name"] == NAME and manifest["engineArgs"]["max_model_len"] == 512
    assert manifest["exitCode"] == 0
    progress = json.loads((out / "progress" / "shard-0.json").read_bytes())
    assert progress["state"] == "done" and progress["total"] == 6 and progress["completed"] == 6


def test_greedy_output_equals_transformers(
    tmp_path: Path, chat_engine: Any, tiny_model: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = ["Hello there, explain the batch model", "Count tokens", "What is a shard?"]
    lines = [chat_line(f"g{i}", p, max_tokens=12, temperature=0) for i, p in enumerate(prompts)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    run_local(str(source), str(tmp_path / "out"), "unused", NAME, engine=chat_engine)
    output = by_custom_id(_results(tmp_path / "out")[0])

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    for i, prompt in enumerate(prompts):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        generated = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
        new_tokens = generated[0][len(ids) :]
        expected = tokenizer.decode(new_tokens, skip_special_tokens=True)
        body = output[f"g{i}"]["response"]["body"]
        assert body["usage"]["prompt_tokens"] == len(ids)
        assert body["usage"]["completion_tokens"] == len(new_tokens)
        # Random weights emit byte-level tokens that can end mid-character: vLLM's incremental
        # detokenizer holds such a tail back, a one-shot decode renders it as U+FFFD.
        assert body["choices"][0]["message"]["content"] == expected.rstrip("\ufffd")
        assert len(expected.rstrip("\ufffd")) >= 6


def test_every_bad_line_gets_its_own_error_and_the_rest_completes(
    tmp_path: Path, chat_engine: Any
) -> None:
    huge = "word " * (1024 * 1024)  # a 5 MB single line: valid JSON, far past max_model_len
    lines = [
        chat_line("ok-1", "fine", max_tokens=3, temperature=0),  # 1
        b'{"custom_id": "broken", "method": "POST"',  # 2 invalid JSON
        json.dumps(
            {
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": NAME, "messages": []},
            }
        ).encode(),  # 3 no custom_id
        chat_line("ok-1", "again", max_tokens=3),  # 4 duplicate custom_id
        chat_line("wrong-url", "x", url="/v1/images"),  # 5 an endpoint vLLM cannot serve
        json.dumps(
            {
                "custom_id": "wrong-method",
                "method": "GET",
                "url": "/v1/chat/completions",
                "body": {"model": NAME},
            }
        ).encode(),  # 6
        chat_line("other-model", "x", model="gpt-4o"),  # 7
        chat_line("too-long", "word " * 2000),  # 8 over max_model_len
        chat_line("five-mb", huge),  # 9
        b'{"custom_id": "latin1", "body": "caf\xe9"}',  # 10 not UTF-8
        b"",  # 11 blank: skipped, in neither file
        json.dumps(
            {
                "custom_id": "bad-messages",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": NAME, "messages": "hi"},
            }
        ).encode(),  # 12
        chat_line("bad-param", "x", temperature="hot"),  # 13
        chat_line("ok-2", "also fine", max_tokens=3, temperature=0),  # 14
    ]
    source = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out"
    manifest = run_local(str(source), str(out), "unused", NAME, engine=chat_engine)
    output, errors = _results(out)
    assert sorted(r["custom_id"] for r in output) == ["ok-1", "ok-2"]
    assert len(output) + len(errors) == 13  # every non-blank line, once
    by_line = {e["error"]["line"]: e for e in errors}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13]

    def rule(line: int) -> str:
        return str(by_line[line]["error"]["message"]).split(":", 1)[0]

    assert rule(2) == "invalid_json" and rule(3) == "missing_custom_id"
    assert rule(4) == "duplicate_custom_id" and by_line[4]["custom_id"] == "ok-1"
    assert rule(5) == "unsupported_endpoint" and rule(6) == "invalid_method"
    assert by_line[5]["error"]["code"] == ErrorCode.UNSUPPORTED_ENDPOINT.value
    assert rule(10) == "invalid_utf8"
    assert by_line[7]["error"]["code"] == ErrorCode.MODEL_NOT_FOUND.value
    for line in (8, 9, 12, 13):  # refused by the engine or by parameter checks: HTTP 400
        row = by_line[line]
        assert row["response"]["status_code"] == 400, row
        assert row["response"]["body"]["error"]["message"]
        assert row["error"]["code"] == ErrorCode.ENGINE_ERROR.value
    assert manifest["requestCounts"] == {"total": 13, "completed": 2, "failed": 11}


@pytest.mark.parametrize("content", [b"", b"\n\n", b"nope\n{}\n"])
def test_empty_and_all_bad_files(tmp_path: Path, chat_engine: Any, content: bytes) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(content)
    manifest = run_local(str(source), str(tmp_path / "out"), "unused", NAME, engine=chat_engine)
    output, errors = _results(tmp_path / "out")
    bad = len([line for line in content.splitlines() if line.strip()])
    assert output == [] and len(errors) == bad
    assert manifest["requestCounts"] == {"total": bad, "completed": 0, "failed": bad}


def test_sampling_parameters_reach_the_engine(tmp_path: Path, chat_engine: Any) -> None:
    lines = [
        chat_line("seed-a", "Tell me something", max_tokens=10, temperature=1.0, seed=7),
        chat_line("seed-b", "Tell me something", max_tokens=10, temperature=1.0, seed=7),
        chat_line("n2", "Two answers", max_tokens=4, n=2, temperature=1.0, seed=1),
        chat_line(
            "lp", "hi", max_completion_tokens=3, logprobs=True, top_logprobs=2, temperature=0
        ),
        chat_line("greedy", "Say something long", max_tokens=20, temperature=0),
        chat_line("free", "Pick a color", max_tokens=40, temperature=0),
        chat_line(
            "json",
            "Pick a color",
            max_tokens=40,
            temperature=0,
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "c",
                    "schema": {
                        "type": "object",
                        "properties": {"color": {"enum": ["red", "blue"]}},
                        "required": ["color"],
                        "additionalProperties": False,
                    },
                },
            },
        ),
    ]
    source = write_lines(tmp_path / "in.jsonl", lines)
    run_local(str(source), str(tmp_path / "out"), "unused", NAME, engine=chat_engine)
    rows = by_custom_id(_results(tmp_path / "out")[0])
    body = {cid: row["response"]["body"] for cid, row in rows.items()}

    def content(cid: str, i: int = 0) -> str:
        return str(body[cid]["choices"][i]["message"]["content"])

    assert content("seed-a") == content("seed-b")
    assert len(body["n2"]["choices"]) == 2 and body["n2"]["usage"]["completion_tokens"] == 8
    logprobs = body["lp"]["choices"][0]["logprobs"]["content"]
    assert len(logprobs) == body["lp"]["usage"]["completion_tokens"] == 3
    assert all(len(step["top_logprobs"]) == 2 and step["logprob"] <= 0 for step in logprobs)
    # The grammar holds: a random model may stall in whitespace, but it writes nothing the
    # schema forbids (the same prompt unconstrained writes other characters).
    constrained = content("json")
    assert constrained.startswith("{") and set(constrained) <= set('{}":, \t\n' + "colorredblue")
    assert not set(content("free")) <= set('{}":, \t\n' + "colorredblue")
    if body["json"]["choices"][0]["finish_reason"] == "stop":
        assert json.loads(constrained)["color"] in ("red", "blue")

    # A stop string taken from the greedy answer cuts the same request there.
    greedy = content("greedy")
    stop = greedy[len(greedy) // 2 :][:3]
    assert stop.strip(), greedy
    again = write_lines(
        tmp_path / "stop.jsonl",
        [chat_line("stopped", "Say something long", max_tokens=20, temperature=0, stop=[stop])],
    )
    run_local(str(again), str(tmp_path / "out-stop"), "unused", NAME, engine=chat_engine)
    stopped = _results(tmp_path / "out-stop")[0][0]["response"]["body"]["choices"][0]
    assert stopped["finish_reason"] == "stop"
    assert stopped["message"]["content"] == greedy[: greedy.index(stop)]


def test_completions_endpoint(tmp_path: Path, completion_engine: Any) -> None:
    lines = [
        completion_line("text", "The batch model", max_tokens=4, temperature=0),
        completion_line("tokens", [5, 6, 7, 8], max_tokens=3, temperature=0, logprobs=2),
        completion_line("echo", "Echo me", max_tokens=2, temperature=0, echo=True),
        completion_line("two-prompts", ["a", "b"], max_tokens=2),
    ]
    source = write_lines(tmp_path / "in.jsonl", lines)
    run_local(
        str(source),
        str(tmp_path / "out"),
        "unused",
        NAME,
        endpoint=Endpoint.COMPLETIONS,
        engine=completion_engine,
    )
    output, errors = _results(tmp_path / "out")
    rows = by_custom_id(output)
    text = rows["text"]["response"]["body"]
    assert text["object"] == "text_completion" and text["id"].startswith("cmpl-")
    assert text["usage"]["completion_tokens"] == 4 and text["choices"][0]["text"]
    tokens = rows["tokens"]["response"]["body"]
    assert tokens["usage"]["prompt_tokens"] == 4
    assert len(tokens["choices"][0]["logprobs"]["tokens"]) == 3
    assert rows["echo"]["response"]["body"]["choices"][0]["text"].startswith("Echo me")
    assert [e["custom_id"] for e in errors] == ["two-prompts"]
    assert errors[0]["response"]["status_code"] == 400


def test_two_shards_in_s3_with_duplicates_across_lines(
    chat_engine: Any, s3_settings: StorageSettings, s3_bucket: str
) -> None:
    lines = chat_batch(10, max_tokens=2)
    lines.insert(4, chat_line("req-7", "duplicate of a later id", max_tokens=2))
    lines.append(chat_line("req-2", "duplicate of an earlier id", max_tokens=2))
    source = f"s3://{s3_bucket}/in/batch.jsonl"
    out = f"s3://{s3_bucket}/out"
    store = get_store(source, s3_settings)
    store.write_bytes(source, b"\n".join(lines) + b"\n")
    write_plan(source, out, chunk_lines=3, settings=s3_settings)
    for shard in (0, 1):
        config = RunConfig(
            source,
            out,
            "unused",
            NAME,
            shard_index=shard,
            shard_count=2,
            metrics_port=0,
            settings=s3_settings,
        )
        assert run_shard(config, engine=chat_engine).exit_code == ExitCode.OK
    manifest = finalize(FinalizeConfig(source, out, shard_count=2, settings=s3_settings))
    output = read_jsonl(store.read_bytes(f"{out}/output.jsonl"))
    errors = read_jsonl(store.read_bytes(f"{out}/errors.jsonl"))
    # Input line order after finalize, each custom_id once (line 5 is the first req-7).
    assert [r["custom_id"] for r in output] == [
        *(f"req-{i}" for i in range(4)),
        "req-7",
        *(f"req-{i}" for i in (4, 5, 6, 8, 9)),
    ]
    # The first copy runs; the plan found the later copies across the file.
    assert sorted((e["custom_id"], e["error"]["line"]) for e in errors) == [
        ("req-2", 12),
        ("req-7", 9),
    ]
    assert by_custom_id(output)["req-7"]["response"]["body"]["choices"]
    chunks = {info.uri.split("/")[-2] for info in store.list(f"{out}/parts/chunk-")}
    assert chunks == {f"chunk-{n:06d}" for n in range(4)}  # 10 runnable lines, 3 a chunk
    for shard in (0, 1):
        progress = json.loads(store.read_bytes(f"{out}/progress/shard-{shard}.json"))
        assert progress["state"] == "done" and progress["shardCount"] == 2
    assert manifest["requestCounts"] == {"total": 12, "completed": 10, "failed": 2}


def test_a_dead_holders_chunk_is_resumed_skipping_its_committed_lines(
    tmp_path: Path, chat_engine: Any
) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(12, max_tokens=2))
    out = tmp_path / "out"
    write_plan(str(source), str(out), chunk_lines=4)
    config = RunConfig(str(source), str(out), "unused", NAME, metrics_port=0)
    first = run_shard(config, engine=chat_engine)
    assert first.exit_code == ExitCode.OK and first.chunks == 3
    # As if the holder of chunk 1 died after committing half of it: one part with two
    # lines, and its lease held but expired.
    part = next((out / "parts" / "chunk-000001").iterdir())
    part.write_bytes(b"".join(part.read_bytes().splitlines(keepends=True)[:2]))
    lease = out / "leases" / "chunk-000001.json"
    held = json.loads(lease.read_bytes()) | {"state": "held", "expiresAt": "2000-01-01T00:00:00Z"}
    lease.write_text(json.dumps(held))
    second = run_shard(config, engine=chat_engine)
    assert second.exit_code == ExitCode.OK and second.chunks == 1
    assert second.recovered_lines == 2
    assert second.tally.completed - first.tally.completed == 2  # only the two missing lines ran
    assert len(list((out / "parts" / "chunk-000001").iterdir())) == 2
    after = json.loads(lease.read_bytes())
    assert after["state"] == "done" and after["takeovers"] == 1
    checkpoint = json.loads((out / "checkpoints" / "shard-0.json").read_bytes())
    assert checkpoint["attempt"] == 2
    finalize(FinalizeConfig(str(source), str(out)))
    output, errors = _results(out)
    assert errors == [] and [r["custom_id"] for r in output] == [f"req-{i}" for i in range(12)]


def test_deadline_stops_the_shard_and_expires_the_rest(tmp_path: Path, chat_engine: Any) -> None:
    # Far more work than the tiny model does in the deadline plus the grace even on an idle
    # machine (it has done 80 of these in under 2 s), so lines are left to expire.
    total = 600
    lines = chat_batch(total, max_tokens=400, ignore_eos=True)
    source = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out"
    write_plan(str(source), str(out), chunk_lines=50)
    deadline = datetime.now(UTC) + timedelta(seconds=1.5)
    result = run_shard(
        RunConfig(
            str(source),
            str(out),
            "unused",
            NAME,
            deadline=deadline,
            grace_seconds=2,
            metrics_port=0,
            max_in_flight=8,
        ),
        engine=chat_engine,
    )
    assert result.exit_code == ExitCode.EXPIRED
    assert chat_engine.in_flight() == 0
    manifest = finalize(FinalizeConfig(str(source), str(out), reason="expired"))
    output, errors = _results(out)
    assert len(output) + len(errors) == total
    assert errors and {e["error"]["code"] for e in errors} == {ErrorCode.BATCH_EXPIRED.value}
    assert json.loads((out / "progress" / "shard-0.json").read_bytes())["state"] == "expired"
    assert manifest["requestCounts"]["total"] == total


def test_stop_request_cancels_in_flight_and_unstarted_lines(
    tmp_path: Path, chat_engine: Any
) -> None:
    total = 600  # more than the tiny model finishes in the 1 s before the stop plus the grace
    source = write_lines(tmp_path / "in.jsonl", chat_batch(total, max_tokens=400, ignore_eos=True))
    out = tmp_path / "out"
    write_plan(str(source), str(out), chunk_lines=50)
    stop = StopSignal()
    timer = threading.Timer(1.0, stop.request, args=(ErrorCode.BATCH_CANCELLED,))
    timer.start()
    try:
        result = run_shard(
            RunConfig(
                str(source),
                str(out),
                "unused",
                NAME,
                grace_seconds=1,
                metrics_port=0,
                max_in_flight=8,
            ),
            engine=chat_engine,
            stop=stop,
        )
    finally:
        timer.cancel()
    assert result.exit_code == ExitCode.CANCELLED
    # A stop (SIGTERM) records nothing but finished work: the Job's next pod, after a
    # preemption, must still find the other lines to run.
    parts = b"".join(p.read_bytes() for p in (out / "parts").glob("chunk-*/part-*.jsonl"))
    assert b"batch_cancelled" not in parts
    assert result.tally.completed + result.tally.failed < total
    finalize(FinalizeConfig(str(source), str(out), reason="cancelled"))
    output, errors = _results(out)
    assert len(output) + len(errors) == total
    assert len(output) == result.tally.completed
    assert {e["error"]["code"] for e in errors} == {ErrorCode.BATCH_CANCELLED.value}


def test_stop_after_the_deadline_expires_the_rest(tmp_path: Path) -> None:
    """A SIGTERM that comes after the deadline takes the deadline's path: exit 43, not 44,
    and finalize (reason expired) records the lines as batch_expired."""
    source = write_lines(tmp_path / "in.jsonl", chat_batch(7))
    out = tmp_path / "out"
    write_plan(str(source), str(out))
    stop = StopSignal()
    stop.request(ErrorCode.BATCH_CANCELLED)
    past = datetime.now(UTC) - timedelta(seconds=5)
    # No engine and a model that does not exist: an expired shard never loads it.
    result = run_shard(
        RunConfig(str(source), str(out), "/nonexistent", NAME, deadline=past, metrics_port=0),
        stop=stop,
    )
    assert result.exit_code == ExitCode.EXPIRED
    assert result.tally.failed == 0 and not list(out.glob("leases/chunk-*"))  # claimed none
    assert json.loads((out / "progress" / "shard-0.json").read_bytes())["state"] == "expired"
    finalize(FinalizeConfig(str(source), str(out), reason="expired"))
    output, errors = _results(out)
    assert output == [] and {e["error"]["code"] for e in errors} == {"batch_expired"}


def test_ctrl_c_in_a_local_run_finalizes_every_line_as_cancelled(
    tmp_path: Path, chat_engine: Any
) -> None:
    """``llmbatch run`` on Ctrl-C: the shard stops without recording the rest (exit 44), and
    run_local's finalize with reason cancelled accounts for every line."""
    # Short requests, so some finish before the Ctrl-C (the shared engine keeps hundreds in
    # flight), and far more than the tiny model runs before it plus the grace.
    total = 10000
    source = write_lines(tmp_path / "in.jsonl", chat_batch(total, max_tokens=16, ignore_eos=True))
    out = tmp_path / "out"
    timer = threading.Timer(3.0, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        manifest = run_local(
            str(source),
            str(out),
            "unused",
            NAME,
            engine=chat_engine,
            grace_seconds=1,
        )
    finally:
        timer.cancel()
    assert manifest["exitCode"] == ExitCode.CANCELLED
    output, errors = _results(out)
    assert len(output) + len(errors) == total
    assert output and errors
    assert {e["error"]["code"] for e in errors} == {ErrorCode.BATCH_CANCELLED.value}
    assert manifest["requestCounts"] == {
        "total": total,
        "completed": len(output),
        "failed": len(errors),
    }


def test_s3_faults_on_reads_and_writes_lose_nothing(
    chat_engine: Any, s3_server: Any, s3_bucket: str
) -> None:
    from llmbatch_sandbox.s3faults import FaultConfig, running_proxy

    direct = get_store(f"s3://{s3_bucket}/x", s3_server.settings())
    source = f"s3://{s3_bucket}/in.jsonl"
    direct.write_bytes(source, b"\n".join(chat_batch(30, max_tokens=2)) + b"\n")
    with running_proxy(s3_server.endpoint_url, FaultConfig.uniform(0.15, seed=11)) as proxy:
        settings = StorageSettings(
            endpoint_url=proxy.url,
            region=s3_server.region,
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
            backoff_base=0.01,
            backoff_cap=0.2,
        )
        manifest = run_local(
            source,
            f"s3://{s3_bucket}/out",
            "unused",
            NAME,
            settings=settings,
            engine=chat_engine,
            plan_options={"chunk_lines": 5},
        )
        injected = proxy.proxy.injected
    assert injected > 0
    output = read_jsonl(direct.read_bytes(f"s3://{s3_bucket}/out/output.jsonl"))
    assert sorted(r["custom_id"] for r in output) == sorted(f"req-{i}" for i in range(30))
    assert manifest["requestCounts"] == {"total": 30, "completed": 30, "failed": 0}


def test_chat_template_override(tmp_path: Path, chat_engine: Any, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    from llmbatch.runner.engine import GenerationEngine

    plain = GenerationEngine(
        chat_engine.llm,
        NAME,
        Endpoint.CHAT_COMPLETIONS,
        chat_engine.engine_args,
        chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}",
    )
    source = write_lines(tmp_path / "in.jsonl", [chat_line("t", "only these words", max_tokens=2)])
    run_local(str(source), str(tmp_path / "out"), "unused", NAME, engine=plain)
    usage = _results(tmp_path / "out")[0][0]["response"]["body"]["usage"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert usage["prompt_tokens"] == len(tokenizer("only these words")["input_ids"])
