"""The typed status: read leniently, written in wire form, patched field by field."""

from __future__ import annotations

from datetime import UTC, datetime

from llmbatch.api.batchjob import BatchJobStatus, RequestCounts, Timestamps
from llmbatch.api.phases import Phase
from llmbatch.controller.phase_status import TIMESTAMP_OF
from llmbatch.controller.status import (
    VOLATILE_FIELDS,
    alias,
    merge_patch,
    parse_status,
    status_patch,
    to_wire,
)

MOMENT = datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def test_an_old_or_foreign_status_never_stops_a_pass() -> None:
    status = parse_status(
        {
            "phase": "Exploded",  # not a phase (any more): dropped
            "jobName": "demo-run",
            "someOldField": {"x": 1},  # unknown: ignored
            "conditions": [
                {"type": "Running", "status": "True", "reason": "PodsRunning"},
                {"type": "Validated", "status": "maybe"},  # one bad item: only it goes
            ],
            "deadline": "not a time",
        }
    )
    assert status.phase is None and status.deadline is None
    assert status.job_name == "demo-run"
    assert [c.type for c in status.conditions] == ["Running"]
    assert parse_status(None) == BatchJobStatus()


def test_wire_form_is_camel_case_whole_seconds_and_leaves_unset_fields_out() -> None:
    status = BatchJobStatus(
        phase=Phase.RUNNING,
        deadline=MOMENT,
        timestamps=Timestamps(created_at=MOMENT),
        request_counts=RequestCounts(total=None, completed=3),
    )
    assert to_wire(status) == {
        "phase": "Running",
        "deadline": "2026-01-01T12:00:00Z",
        "timestamps": {"createdAt": "2026-01-01T12:00:00Z"},
        # An unknown total is left to the CRD's default, not written as a number.
        "requestCounts": {"completed": 3, "failed": 0},
    }


def test_patch_sets_changed_fields_and_deletes_removed_ones() -> None:
    assert merge_patch({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5}) == {"b": 5, "c": None}
    old = parse_status({"phase": "Running", "eta": "2026-01-01T12:30:00Z", "progress": "1/2"})
    new = old.model_copy(update={"eta": None, "progress": "2/2"})
    assert status_patch(old, new) == {"eta": None, "progress": "2/2"}
    assert status_patch(old, old.model_copy(deep=True)) == {}


def test_volatile_fields_are_wire_names_of_the_model() -> None:
    assert alias("request_counts") == "requestCounts"
    assert {
        "requestCounts",
        "usage",
        "progress",
        "throughput",
        "eta",
        "shards",
        "gpuSeconds",
        "gpuSecondsAt",
        "costUsd",
    } == VOLATILE_FIELDS


def test_every_phase_timestamp_is_a_field_of_the_model() -> None:
    assert set(TIMESTAMP_OF.values()) <= set(Timestamps.model_fields)
