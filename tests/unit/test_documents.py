"""The progress, checkpoint and manifest documents keep their wire shape."""

from __future__ import annotations

import json

from llmbatch.api.documents import Counts, Manifest, ShardCheckpoint, ShardProgress


def test_a_checkpoint_writes_no_total_it_does_not_know() -> None:
    checkpoint = ShardCheckpoint(shard=1, request_counts=Counts(completed=3, failed=1))
    assert checkpoint.to_dict()["requestCounts"] == {"completed": 3, "failed": 1}
    manifest = Manifest(request_counts=Counts(total=4, completed=3, failed=1))
    assert manifest.to_dict()["requestCounts"] == {"total": 4, "completed": 3, "failed": 1}


def test_progress_round_trips_and_keeps_an_unknown_total() -> None:
    progress = ShardProgress(shard=0, shard_count=2, completed=5, throughput=1.5)
    wire = json.loads(progress.to_json(indent=2))
    assert wire["total"] is None and wire["shardCount"] == 2
    assert ShardProgress.model_validate(wire) == progress


def test_readers_ignore_fields_of_a_newer_writer() -> None:
    data = b'{"shard": 3, "attempt": 2, "state": "done", "somethingNew": {"x": 1}}'
    checkpoint = ShardCheckpoint.model_validate_json(data)
    assert (checkpoint.shard, checkpoint.attempt, checkpoint.state) == (3, 2, "done")
    assert "somethingNew" not in checkpoint.to_dict()


def test_the_manifest_counts_unanswered_lines_and_reads_old_manifests_without_them() -> None:
    manifest = Manifest(reason="expired", request_counts=Counts(total=2, completed=2))
    # Sorted keys, "unanswered" among them: a new manifest always says how many lines
    # finalize recorded as batch_expired / batch_cancelled.
    wire = manifest.model_copy(update={"unanswered": 0}).to_json()
    assert wire == (
        b'{"batch": null, "endpoint": null, "engineArgs": null, "engineVersion": null, '
        b'"errorFile": null, "input": null, "inputLines": null, "model": null, '
        b'"outputFile": null, "reason": "expired", "requestCounts": {"completed": 2, '
        b'"failed": 0, "total": 2}, "runnerVersion": null, "sha256": {"errors": null, '
        b'"input": null, "output": null}, "shardCount": 1, "timing": {"finalizedAt": null, '
        b'"runFinishedAt": null, "startedAt": null}, "unanswered": 0, "usage": '
        b'{"completionTokens": 0, "promptTokens": 0}}'
    )
    assert Manifest.model_validate_json(wire).unanswered == 0
    # A manifest written before the field: it does not say (None, not 0), so a late batch
    # stays Expired (policy/deadline.py).
    old = json.loads(wire)
    del old["unanswered"]
    assert Manifest.model_validate(old).unanswered is None
