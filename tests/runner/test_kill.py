"""Shards as processes: two at once sharing the chunks, one SIGKILLed mid-chunk (the chunk is
taken over once its lease expires), one SIGTERMed mid-chunk (the finished lines are committed
and skipped by the next holder). Every line ends up in exactly one part, once."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from llmbatch.api.exitcodes import ExitCode
from llmbatch.runner.records import decode_record
from tests.runner.batches import chat_batch, read_jsonl, write_lines
from tests.runner.plans import write_plan
from tests.runner.processes import finish, run_args, runner, wait_for

pytestmark = pytest.mark.slow


def _part_lines(out: Path) -> list[int]:
    return [
        decode_record(raw).lineno
        for path in sorted(out.glob("parts/chunk-*/part-*.jsonl"))
        for raw in path.read_bytes().splitlines()
        if raw.strip()
    ]


def _progress(out: Path) -> dict[str, Any]:
    path = out / "progress" / "shard-0.json"
    try:
        return dict(json.loads(path.read_bytes()))
    except (FileNotFoundError, ValueError):
        return {}


def _leases(out: Path) -> dict[int, dict[str, Any]]:
    return {
        int(path.stem.split("-")[1]): json.loads(path.read_bytes())
        for path in out.glob("leases/chunk-*.json")
    }


def _finalize(source: Path, out: Path, *extra: str) -> None:
    code, err = finish(runner("finalize", "--input", str(source), "--output", str(out), *extra))
    assert code == ExitCode.OK, err[-3000:]


def _exactly_once(source: Path, out: Path, total: int) -> None:
    lines = _part_lines(out)
    assert sorted(lines) == list(range(1, total + 1)), "a line committed twice or never"
    _finalize(source, out)
    ids = [row["custom_id"] for row in read_jsonl((out / "output.jsonl").read_bytes())]
    assert ids == [f"req-{i}" for i in range(total)]  # input order, each once


def test_sigkill_mid_chunk_then_another_shard_takes_the_chunk_over(
    tmp_path: Path, tiny_model: Path, record_property: Any
) -> None:
    total, chunk_lines, in_flight = 240, 40, 16
    source = write_lines(tmp_path / "in.jsonl", chat_batch(total, max_tokens=32, ignore_eos=True))
    out = tmp_path / "out"
    write_plan(str(source), str(out), chunk_lines=chunk_lines)
    options = (
        *("--lease-seconds", "4", "--renew-seconds", "1", "--progress-seconds", "0.2"),
        *("--max-in-flight", str(in_flight)),
    )
    proc = runner(*run_args(source, out, tiny_model, *options))

    def mid_chunk() -> bool:
        committed = len(_part_lines(out))
        return committed >= chunk_lines and _progress(out).get("completed", 0) > committed + 5

    wait_for(mid_chunk, proc, 240)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    committed = len(_part_lines(out))
    finished = int(_progress(out)["completed"])  # the last progress before the kill
    held = {n: lease for n, lease in _leases(out).items() if lease["state"] == "held"}
    assert held, "the kill must land while a chunk is held"
    assert committed < total
    # Work the kill can cost: what the dead shard finished but had not committed. Its held
    # chunks are the current one and at most the next (claimed once the current one was
    # fully submitted, so at most one engine window of it ran).
    lost = finished - committed
    assert 0 < lost <= chunk_lines + in_flight, (finished, committed)
    at_risk = sum(chunk_lines for _ in held)
    assert len(held) <= 2

    started = time.monotonic()
    code, err = finish(runner(*run_args(source, out, tiny_model, *options)))
    assert code == ExitCode.OK, err[-3000:]
    leases = _leases(out)
    assert all(lease["state"] == "done" for lease in leases.values())
    assert all(leases[n]["takeovers"] == 1 for n in held)
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("took over chunk" in r.get("message", "") for r in logs)
    _exactly_once(source, out, total)
    record_property("kill_recomputed_lines", lost)
    record_property("kill_held_chunk_lines", at_risk)
    record_property("takeover_run_seconds", round(time.monotonic() - started, 1))
    print(f"\nSIGKILL: {lost} lines recomputed (finished, not committed); held {len(held)} chunks")


def test_sigterm_mid_chunk_commits_finished_lines_and_the_resumer_skips_them(
    tmp_path: Path, tiny_model: Path
) -> None:
    total, chunk_lines = 200, 50
    source = write_lines(tmp_path / "in.jsonl", chat_batch(total, max_tokens=64, ignore_eos=True))
    out = tmp_path / "out"
    write_plan(str(source), str(out), chunk_lines=chunk_lines)
    options = ("--progress-seconds", "0.2", "--max-in-flight", "16", "--grace-period", "4")
    proc = runner(*run_args(source, out, tiny_model, *options))
    wait_for(lambda: _progress(out).get("completed", 0) >= 10, proc, 240)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc, timeout=60)
    assert code == ExitCode.CANCELLED, err[-3000:]
    assert _progress(out)["state"] == "cancelled"
    committed = _part_lines(out)
    assert 10 <= len(committed) < total, "the SIGTERM must land mid-run"
    parts = b"".join(p.read_bytes() for p in out.glob("parts/chunk-*/part-*.jsonl"))
    assert b"batch_cancelled" not in parts  # a SIGTERM records nothing but finished work
    # The unfinished chunk's lease is released at once (no wait for its expiry) and not done.
    partial = {n for n, lease in _leases(out).items() if lease["state"] == "held"}
    assert partial

    # If the batch ends here, finalize records exactly the lines no part holds as cancelled.
    ended = tmp_path / "ended"
    shutil.copytree(out, ended)
    _finalize(source, ended, "--reason", "cancelled")
    errors = read_jsonl((ended / "errors.jsonl").read_bytes())
    unfinished = {f"req-{n - 1}" for n in range(1, total + 1) if n not in set(committed)}
    assert {e["custom_id"] for e in errors} == unfinished
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}

    # Else the next pod resumes: the committed lines of the partial chunk are skipped.
    code, err = finish(runner(*run_args(source, out, tiny_model, *options)), timeout=300)
    assert code == ExitCode.OK, err[-3000:]
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    resumed = [r["message"] for r in logs if "resuming" in r.get("message", "")]
    assert resumed, "the partial chunk must be resumed"
    _exactly_once(source, out, total)


def test_two_shards_at_once_on_s3_share_the_chunks_each_line_once(
    tiny_model: Path, s3_server: Any, s3_bucket: str
) -> None:
    from llmbatch.storage import get_store

    total, chunk_lines = 120, 10
    settings = s3_server.settings()
    source, out = f"s3://{s3_bucket}/in.jsonl", f"s3://{s3_bucket}/out"
    store = get_store(source, settings)
    store.write_bytes(source, b"\n".join(chat_batch(total, max_tokens=16)) + b"\n")
    write_plan(source, out, chunk_lines=chunk_lines, settings=settings)
    procs = [
        runner(
            *run_args(source, out, tiny_model, "--shard-index", str(i), "--shard-count", "2"),
            env=s3_server.env(),
        )
        for i in (0, 1)
    ]
    for proc in procs:
        code, err = finish(proc)
        assert code == ExitCode.OK, err[-3000:]
    lines = [
        decode_record(raw).lineno
        for info in store.list(f"{out}/parts/chunk-")
        for raw in store.read_bytes(info.uri).splitlines()
    ]
    assert sorted(lines) == list(range(1, total + 1))  # no chunk worked twice
    leases = [json.loads(store.read_bytes(info.uri)) for info in store.list(f"{out}/leases/chunk-")]
    assert len(leases) == total // chunk_lines
    assert {lease["state"] for lease in leases} == {"done"}
    holders = {lease["holder"].rsplit("-", 1)[0] for lease in leases}
    assert holders == {"shard-0", "shard-1"}, "both shards must have claimed chunks"
    for shard in (0, 1):
        progress = json.loads(store.read_bytes(f"{out}/progress/shard-{shard}.json"))
        assert progress["state"] == "done" and progress["total"] == total
