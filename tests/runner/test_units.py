"""Runner pieces without vLLM: part records, finalize of planned batches, shard
start-up checks, CLI parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.layout import OutputLayout
from llmbatch.api.lines import ErrorCode
from llmbatch.runner import records
from llmbatch.runner.cli import parse_deadline, parse_engine_args
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.finalize import FinalizeConfig, finalize
from llmbatch.runner.parts import LineSet
from llmbatch.storage import get_store
from tests.runner.batches import chat_batch, chat_line, read_jsonl, write_lines
from tests.runner.plans import write_plan


def test_record_round_trip_keeps_the_line_bytes() -> None:
    rec = records.success_record("b", 7, "cid", {"x": "é"}, 3, 4)
    back = records.decode_record(rec.encode())
    assert back == rec
    line = json.loads(back.line)
    assert line["id"] == f"batch_req_{records.stable_id('b', 7)}"
    assert line["response"]["status_code"] == 200 and line["error"] is None


def test_lone_surrogate_custom_id_still_serialises() -> None:
    rec = records.error_record("b", 1, "\udc80", "invalid_request", "m")
    assert json.loads(rec.line)["custom_id"] == "\udc80"


def test_lineset_grows_and_deduplicates() -> None:
    seen = LineSet()
    assert seen.add(1) and seen.add(1_000_003) and not seen.add(1)
    assert 1_000_003 in seen and 2 not in seen and seen.count == 2


def _write_part(
    out: Path, chunk: int, number: int, recs: list[records.Record], writer: str = ""
) -> None:
    target = Path(OutputLayout(str(out)).chunk_part(chunk, number, writer))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(r.encode() for r in recs))


def test_finalize_merges_dedups_and_is_idempotent(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(4))
    out = tmp_path / "out"
    write_plan(str(source), str(out), chunk_lines=2)
    _write_part(out, 0, 0, [records.success_record("b", 1, "req-0", {"n": 1}, 2, 3)])
    _write_part(out, 0, 1, [records.success_record("b", 2, "req-1", {}, 1, 1)])
    _write_part(out, 1, 0, [records.success_record("b", 3, "req-2", {}, 1, 1)])
    # Line 3 answered twice (a holder that lost its lease and the one that took over): once.
    _write_part(
        out,
        1,
        1,
        [
            records.success_record("b", 3, "req-2", {}, 1, 1),
            records.error_record("b", 4, "req-3", "invalid_request", "m"),
        ],
    )
    config = FinalizeConfig(str(source), str(out))
    manifest = finalize(config)
    assert manifest["requestCounts"] == {"total": 4, "completed": 3, "failed": 1}
    assert manifest["unanswered"] == 0
    assert manifest["usage"] == {"promptTokens": 4, "completionTokens": 5}
    output = read_jsonl((out / "output.jsonl").read_bytes())
    assert sorted(r["custom_id"] for r in output) == ["req-0", "req-1", "req-2"]
    first = (out / "output.jsonl").read_bytes(), (out / "manifest.json").read_bytes()
    assert finalize(config) == manifest
    assert ((out / "output.jsonl").read_bytes(), (out / "manifest.json").read_bytes()) == first


def test_finalize_without_a_reason_refuses_missing_lines(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(3))
    out = tmp_path / "out"
    write_plan(str(source), str(out), chunk_lines=2)
    _write_part(out, 0, 0, [records.success_record("b", 1, "req-0", {}, 1, 1)])
    with pytest.raises(PermanentError, match=r"line 2 of .* has no result"):
        finalize(FinalizeConfig(str(source), str(out)))
    assert not (out / "output.jsonl").exists() and not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("reason", "code"),
    [("expired", ErrorCode.BATCH_EXPIRED), ("cancelled", ErrorCode.BATCH_CANCELLED)],
)
def test_finalize_records_unfinished_lines_by_reason(
    tmp_path: Path, reason: str, code: ErrorCode
) -> None:
    source = write_lines(tmp_path / "in.jsonl", [*chat_batch(2), b"", b"{bad"])
    out = tmp_path / "out"
    write_plan(str(source), str(out))
    _write_part(out, 0, 0, [records.success_record("b", 1, "req-0", {}, 1, 1)])
    manifest = finalize(FinalizeConfig(str(source), str(out), reason=reason))  # type: ignore[arg-type]
    errors = read_jsonl((out / "errors.jsonl").read_bytes())
    # The unanswered line by the reason (custom_id read back from the input); the invalid
    # line by the plan's own error record.
    assert [(e["custom_id"], e["error"]["code"], e["error"]["line"]) for e in errors] == [
        ("req-1", code.value, 2),
        (None, ErrorCode.INVALID_REQUEST.value, 4),
    ]
    assert manifest["requestCounts"] == {"total": 3, "completed": 1, "failed": 2}
    assert (manifest["reason"], manifest["unanswered"]) == (reason, 1)


def test_a_late_finalize_that_finds_every_line_answered_counts_none_unanswered(
    tmp_path: Path,
) -> None:
    # The deadline passed after the shards answered every line: finalize as expired records
    # nothing as batch_expired, and the manifest says so (the operator then says Succeeded).
    source = write_lines(tmp_path / "in.jsonl", chat_batch(2))
    out = tmp_path / "out"
    write_plan(str(source), str(out))
    answers = [records.success_record("b", n, f"req-{n - 1}", {}, 1, 1) for n in (1, 2)]
    _write_part(out, 0, 0, answers)
    manifest = finalize(FinalizeConfig(str(source), str(out), reason="expired"))
    assert (manifest["reason"], manifest["unanswered"]) == ("expired", 0)
    assert manifest["requestCounts"] == {"total": 2, "completed": 2, "failed": 0}
    assert (out / "errors.jsonl").read_bytes() == b""


def test_cli_parsers() -> None:
    assert parse_deadline("2030-01-02T03:04:05Z").tzinfo is not None
    assert parse_deadline("2030-01-02T03:04:05").utcoffset() is not None
    assert parse_engine_args('{"max_model_len": 64}') == {"max_model_len": 64}
    with pytest.raises(PermanentError):
        parse_engine_args("[1]")
    with pytest.raises(PermanentError):
        parse_deadline("tomorrow")


def test_metrics_serve_and_a_busy_port_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    import socket
    import urllib.request

    from llmbatch.runner.metrics import RunnerMetrics

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = RunnerMetrics("batch-a", 3)
    metrics.finished(True, 10, 5)
    metrics.finished(False, 0, 0)
    metrics.queue_depth.set(7)
    assert metrics.serve(port)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert (
        'llmbatch_runner_requests_total{batch="batch-a",outcome="completed",shard="3"} 1.0' in text
    )
    assert 'llmbatch_runner_completion_tokens_total{batch="batch-a",shard="3"} 5.0' in text
    assert 'llmbatch_runner_queue_depth{batch="batch-a",shard="3"} 7.0' in text
    assert not RunnerMetrics("batch-b", 0).serve(port)  # taken: a warning, no exception
    assert "metrics server not started" in caplog.text
    assert not RunnerMetrics("batch-c", 0).serve(0)


def test_json_logs_carry_batch_shard_and_custom_id() -> None:
    import logging

    from llmbatch.runner.logs import ContextFilter, JsonFormatter

    record = logging.LogRecord(
        "llmbatch.runner", logging.INFO, __file__, 1, "rejected %s", ("x",), None
    )
    record.custom_id = "cid-1"
    ContextFilter("batch-a", 2).filter(record)
    payload = json.loads(JsonFormatter().format(record))
    assert payload["message"] == "rejected x" and payload["level"] == "info"
    assert (payload["batch"], payload["shard"], payload["custom_id"]) == ("batch-a", 2, "cid-1")


def test_parts_of_two_live_attempts_never_collide(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(3))
    out = tmp_path / "out"
    write_plan(str(source), str(out))
    store = get_store(str(out))
    # A holder that lost its lease and the one that took over both write "part 0" of the
    # chunk, with their own writer ids.
    for writer, lines in (("aa11", (1, 2)), ("bb22", (2, 3))):
        recs = [records.success_record("b", n, f"req-{n - 1}", {"w": writer}, 1, 1) for n in lines]
        _write_part(out, 0, 0, recs, writer)
    assert len(list(store.list(str(out / "parts/chunk-")))) == 2
    manifest = finalize(FinalizeConfig(str(source), str(out)))
    assert manifest["requestCounts"] == {"total": 3, "completed": 3, "failed": 0}
    output = read_jsonl((out / "output.jsonl").read_bytes())
    assert sorted(r["custom_id"] for r in output) == ["req-0", "req-1", "req-2"]


def test_a_shard_with_nothing_to_run_never_loads_the_model(tmp_path: Path) -> None:
    from llmbatch.api.exitcodes import ExitCode
    from llmbatch.runner.run import RunConfig, run_shard

    source = write_lines(tmp_path / "in.jsonl", [b"{bad", chat_line("m", "x", model="other")])
    out = tmp_path / "out"
    write_plan(str(source), str(out))
    # The model path does not exist: loading it would fail the shard with 42.
    result = run_shard(
        RunConfig(str(source), str(out), "/nonexistent", "tiny-qwen", metrics_port=0)
    )
    # The bad JSON is the plan's error; the shard answers the other model's line itself.
    assert result.exit_code == ExitCode.OK and result.tally.failed == 1 and result.total == 2
    manifest = finalize(FinalizeConfig(str(source), str(out)))
    assert manifest["requestCounts"] == {"total": 2, "completed": 0, "failed": 2}


def test_empty_batch_in_s3(s3_settings: Any, s3_bucket: str) -> None:
    from llmbatch.api.exitcodes import ExitCode
    from llmbatch.runner.run import RunConfig, run_shard

    source, out = f"s3://{s3_bucket}/empty.jsonl", f"s3://{s3_bucket}/out"
    store = get_store(source, s3_settings)
    store.write_bytes(source, b"")
    write_plan(source, out, settings=s3_settings)
    config = RunConfig(
        source, out, "/nonexistent", "tiny-qwen", metrics_port=0, settings=s3_settings
    )
    assert run_shard(config).exit_code == ExitCode.OK
    manifest = finalize(FinalizeConfig(source, out, settings=s3_settings))
    assert manifest["requestCounts"] == {"total": 0, "completed": 0, "failed": 0}
    assert store.read_bytes(f"{out}/output.jsonl") == b""
    assert store.read_bytes(f"{out}/errors.jsonl") == b""
    assert json.loads(store.read_bytes(f"{out}/progress/shard-0.json"))["state"] == "done"


def test_finalize_writes_both_files_in_input_order_segment_by_segment(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(12))
    out = tmp_path / "out"
    # Chunks fed in reverse line order (as a prefix-grouped chunk may be), two segments.
    plan = write_plan(
        str(source), str(out), chunk_lines=3, segment_lines=6, order=lambda m: m[::-1]
    )
    assert [(s.first_chunk, s.chunks) for s in plan.segments] == [(0, 2), (2, 2)]
    answered = {(0, 0): (1, 2), (1, 0): (4,), (1, 1): (6,), (2, 0): (7,), (3, 0): (11, 12)}
    for (chunk, number), lines in answered.items():
        recs = [
            records.success_record("b", n, f"req-{n - 1}", {}, 1, 1)
            if n % 3
            else records.error_record("b", n, f"req-{n - 1}", "invalid_request", "m")
            for n in lines
        ]
        _write_part(out, chunk, number, recs)
    manifest = finalize(FinalizeConfig(str(source), str(out), reason="cancelled"))
    output = read_jsonl((out / "output.jsonl").read_bytes())
    errors = read_jsonl((out / "errors.jsonl").read_bytes())
    assert [r["custom_id"] for r in output] == [f"req-{n - 1}" for n in (1, 2, 4, 7, 11)]
    assert [(e["error"]["line"], e["error"]["code"]) for e in errors] == [
        (3, "batch_cancelled"),
        (5, "batch_cancelled"),
        (6, "invalid_request"),
        (8, "batch_cancelled"),
        (9, "batch_cancelled"),
        (10, "batch_cancelled"),
        (12, "invalid_request"),
    ]
    assert [e["custom_id"] for e in errors][:2] == ["req-2", "req-4"]
    assert manifest["requestCounts"] == {"total": 12, "completed": 5, "failed": 7}


def test_finalize_and_shards_refuse_without_a_plan_or_with_a_changed_input(
    tmp_path: Path,
) -> None:
    from llmbatch.runner.run import RunConfig, run_shard

    source = write_lines(tmp_path / "in.jsonl", chat_batch(2))
    out = tmp_path / "out"
    config = RunConfig(str(source), str(out), "/nonexistent", "tiny-qwen", metrics_port=0)
    with pytest.raises(PermanentError, match=r"no plan at .*plan.json: the plan step"):
        run_shard(config)
    with pytest.raises(PermanentError, match=r"no plan at .*planned batches only"):
        finalize(FinalizeConfig(str(source), str(out)))
    write_plan(str(source), str(out))
    write_lines(source, chat_batch(3))
    with pytest.raises(PermanentError, match="changed since the plan"):
        run_shard(config)
    with pytest.raises(PermanentError, match="changed since the plan"):
        finalize(FinalizeConfig(str(source), str(out)))


def test_a_store_ignoring_conditional_writes_stops_the_shard_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmbatch.runner import run as run_module
    from llmbatch.runner.run import RunConfig, run_shard
    from llmbatch.storage.local import LocalStore

    class IgnoresIfNoneMatch(LocalStore):
        def put_if_absent(self, uri: str, data: bytes, content_type: str = "") -> str:
            self.write_bytes(uri, data)
            return "etag"

    source = write_lines(tmp_path / "in.jsonl", chat_batch(2))
    out = tmp_path / "out"
    write_plan(str(source), str(out))
    monkeypatch.setattr(run_module, "get_store", lambda uri, settings=None: IgnoresIfNoneMatch())
    with pytest.raises(PermanentError, match="ignores If-None-Match"):
        run_shard(RunConfig(str(source), str(out), "/nonexistent", "tiny-qwen", metrics_port=0))
    assert not list(out.glob("leases/chunk-*"))


def _document(path: Path) -> dict[str, Any]:
    """A document the runner wrote, checked to be in its wire format (2-space indent, sorted
    keys), so the operator, gateway and older readers keep parsing it."""
    data = path.read_bytes()
    parsed: dict[str, Any] = json.loads(data)
    assert data == json.dumps(parsed, indent=2, sort_keys=True).encode()
    return parsed


def test_progress_checkpoint_and_manifest_keep_their_keys(tmp_path: Path) -> None:
    from llmbatch.runner.run import RunConfig, run_shard

    source = write_lines(tmp_path / "in.jsonl", [b"{bad", chat_line("m", "x", model="other")])
    out = tmp_path / "out"
    write_plan(str(source), str(out))
    run_shard(RunConfig(str(source), str(out), "/nonexistent", "tiny-qwen", metrics_port=0))
    manifest = finalize(FinalizeConfig(str(source), str(out)))
    progress = _document(out / "progress" / "shard-0.json")
    assert set(progress) == {
        "shard", "shardCount", "state", "total", "completed", "failed", "promptTokens",
        "completionTokens", "throughput", "startedAt", "updatedAt", "attempt",
    }  # fmt: skip
    # total is the plan's (from the first document); failed is what this shard answered.
    assert (progress["state"], progress["total"], progress["failed"]) == ("done", 2, 1)
    checkpoint = _document(out / "checkpoints" / "shard-0.json")
    assert set(checkpoint) == {
        "shard", "shardCount", "state", "attempt", "parts", "requestCounts", "usage", "input",
        "model", "endpoint", "engineArgs", "runnerVersion", "updatedAt",
    }  # fmt: skip
    assert checkpoint["requestCounts"] == {"completed": 0, "failed": 1}
    assert checkpoint["usage"] == {"promptTokens": 0, "completionTokens": 0}
    assert checkpoint["model"] == {"name": "tiny-qwen", "source": "/nonexistent"}
    assert _document(out / "manifest.json") == manifest
    assert set(manifest) == {
        "batch", "input", "outputFile", "errorFile", "endpoint", "model", "engineArgs",
        "shardCount", "reason", "requestCounts", "unanswered", "usage", "sha256", "inputLines",
        "timing", "runnerVersion", "engineVersion",
    }  # fmt: skip
    assert manifest["unanswered"] == 0
    assert set(manifest["timing"]) == {"startedAt", "runFinishedAt", "finalizedAt"}
    assert manifest["timing"]["startedAt"] == progress["startedAt"]
    assert set(manifest["sha256"]) == {"input", "output", "errors"}
    assert manifest["model"] == checkpoint["model"]
    assert (manifest["endpoint"], manifest["engineArgs"]) == ("/v1/chat/completions", {})
    # Finalizing again answers with the manifest already written.
    assert finalize(FinalizeConfig(str(source), str(out))) == manifest


def test_finalize_without_checkpoints_leaves_the_run_fields_empty(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(1))
    out = tmp_path / "out"
    write_plan(str(source), str(out))
    _write_part(out, 0, 0, [records.success_record("b", 1, "req-0", {}, 2, 3)])
    manifest = finalize(FinalizeConfig(str(source), str(out)))
    assert (manifest["model"], manifest["engineArgs"]) == (None, None)
    assert manifest["endpoint"] == "/v1/chat/completions"  # the plan's
    assert manifest["shardCount"] == 1 and manifest["timing"]["startedAt"] is None
    assert manifest["usage"] == {"promptTokens": 2, "completionTokens": 3}
