"""Wake-ups from watch events, the metrics tracker, and progress reading from storage."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from llmbatch.controller import metrics
from llmbatch.controller.aggregate import aggregate
from llmbatch.controller.handle_watch import needs_daemon, on_batchjob_event, on_job_event
from llmbatch.controller.objects import ProgressReader, read_manifest
from llmbatch.controller.runtime import Wakers
from llmbatch.storage import StorageSettings
from tests.controller.factories import at, batchjob, progress


async def test_spec_change_wakes_the_daemon_but_status_writes_do_not() -> None:
    wakers = Wakers()
    event = wakers.register("uid-1")
    body = batchjob({"phase": "Running"})
    on_batchjob_event(wakers, "ADDED", body)
    assert not event.is_set()
    body["status"] = {"phase": "Running", "progress": "1/2"}
    on_batchjob_event(wakers, "MODIFIED", body)
    assert not event.is_set()
    body["metadata"]["generation"] = 2
    on_batchjob_event(wakers, "MODIFIED", body)
    assert event.is_set()
    await asyncio.sleep(0)


def test_job_events_wake_their_owner_only() -> None:
    wakers = Wakers()
    mine, other = wakers.register("uid-1"), wakers.register("uid-2")
    job = {
        "metadata": {"ownerReferences": [{"kind": "BatchJob", "uid": "uid-1", "controller": True}]}
    }
    on_job_event(wakers, job)
    assert mine.is_set() and not other.is_set()


def test_finished_batchjobs_need_no_daemon_unless_ttl_pending() -> None:
    assert needs_daemon(batchjob())
    assert needs_daemon(batchjob({"phase": "Running"}))
    assert not needs_daemon(batchjob({"phase": "Succeeded"}))
    assert needs_daemon(batchjob({"phase": "Succeeded"}, ttlSecondsAfterFinished=60))


def test_tracker_counts_phases_risk_and_completed_deltas() -> None:
    tracker = metrics.Tracker()
    before = metrics.REQUESTS_COMPLETED._value.get()
    at_risk = {"type": "SLAAtRisk", "status": "True"}
    tracker.observe(
        "a",
        {
            "phase": "Running",
            "conditions": [at_risk],
            "requestCounts": {"completed": 5, "failed": 1},
        },
    )
    tracker.observe("b", {"phase": "Running"})
    assert metrics.BATCHJOBS.labels("Running")._value.get() == 2
    assert metrics.SLA_AT_RISK._value.get() == 1
    # The first sight is a baseline; later sights add their delta.
    assert metrics.REQUESTS_COMPLETED._value.get() == before
    tracker.observe(
        "a",
        {
            "phase": "Succeeded",
            "conditions": [at_risk],
            "requestCounts": {"completed": 9, "failed": 1},
        },
    )
    assert metrics.REQUESTS_COMPLETED._value.get() == before + 4
    assert metrics.SLA_AT_RISK._value.get() == 0
    tracker.forget("a")
    assert metrics.BATCHJOBS.labels("Succeeded")._value.get() == 0


def test_progress_reader_reads_shard_objects_and_rereads_only_changes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "progress").mkdir(parents=True)
    (out / "progress" / "shard-0.json").write_bytes(progress(0, completed=3).to_json())
    (out / "progress" / "shard-1.json").write_bytes(progress(1, completed=4).to_json())
    (out / "progress" / "notes.txt").write_text("ignored")
    reader = ProgressReader()
    objects = reader.read(out.as_uri() + "/", StorageSettings())
    assert sorted(o.completed for o in objects) == [3, 4]
    agg = aggregate(objects, 2, at(2))
    assert agg.completed == 7 and agg.total == 20
    (out / "progress" / "shard-1.json").unlink()
    assert [o.shard for o in reader.read(out.as_uri() + "/", StorageSettings())] == [0]
    assert len(reader.cache) == 1


def test_manifest_is_read_when_present(tmp_path: Path) -> None:
    assert read_manifest(tmp_path.as_uri(), StorageSettings()) is None
    (tmp_path / "manifest.json").write_text(json.dumps({"requestCounts": {"total": 1}}))
    manifest = read_manifest(tmp_path.as_uri(), StorageSettings())
    assert manifest is not None and manifest.request_counts.total == 1


def test_aggregate_ignores_foreign_shards_and_keeps_the_latest() -> None:
    objects = [
        progress(0, completed=1, updated=1),
        progress(0, completed=5, updated=3),
        progress(7, completed=100),
    ]
    agg = aggregate(objects, 2, datetime(2026, 1, 1, 12, 5, tzinfo=UTC))
    assert agg.completed == 5 and agg.total is None and agg.shards_reporting == 1


def test_eta_and_deadline_gauges_exist_only_while_unfinished() -> None:
    tracker = metrics.Tracker()
    status = {"phase": "Running", "eta": "2026-01-01T12:30:00Z", "deadline": "2026-01-01T13:00:00Z"}
    tracker.observe("u", status, "ns", "job-a")
    eta = metrics.ETA_TIMESTAMP.labels("ns", "job-a")._value.get()
    assert eta == datetime(2026, 1, 1, 12, 30, tzinfo=UTC).timestamp()
    assert metrics.DEADLINE_TIMESTAMP.labels("ns", "job-a")._value.get() > eta
    tracker.observe("u", {**status, "phase": "Succeeded"}, "ns", "job-a")
    samples = [s.labels for m in metrics.ETA_TIMESTAMP.collect() for s in m.samples]
    assert {"namespace": "ns", "batchjob": "job-a"} not in samples


def test_input_line_count_is_estimated_from_a_sample(tmp_path: Path) -> None:
    from llmbatch.controller.objects import SAMPLE_BYTES, estimate_lines

    small = tmp_path / "small.jsonl"
    small.write_bytes(b'{"a": 1}\n\n{"b": 2}\n')
    assert estimate_lines(small.as_uri(), StorageSettings()) == 2
    big = tmp_path / "big.jsonl"
    line = b'{"custom_id": "x", "body": {"pad": "' + b"p" * 90 + b'"}}\n'
    big.write_bytes(line * 5000)
    estimate = estimate_lines(big.as_uri(), StorageSettings())
    assert estimate is not None and abs(estimate - 5000) <= 5
    assert len(line) * 5000 > SAMPLE_BYTES  # only a sample was needed


def test_eta_from_an_estimated_total_while_shards_have_not_counted() -> None:
    objects = [
        progress(0, total=None, completed=10, started=0, updated=1),
        progress(1, total=None, completed=10, started=0, updated=1),
    ]
    now = at(1)
    assert aggregate(objects, 2, now).eta is None
    agg = aggregate(objects, 2, now, estimated_total=40)
    assert agg.total is None  # the estimate never shows as the total
    assert agg.eta == at(2)  # 20 done in a minute, 20 left
    assert aggregate(objects, 2, now, estimated_total=5).eta is None  # an estimate proved wrong
