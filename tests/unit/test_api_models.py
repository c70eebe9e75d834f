"""The BatchJob models: wire form, defaults, phases and their OpenAI status names, durations."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from llmbatch.api import (
    BatchJob,
    BatchJobSpec,
    BatchJobStatus,
    Condition,
    ConditionType,
    Endpoint,
    Phase,
    parse_duration,
)
from llmbatch.api.durations import format_duration

SPEC: dict[str, Any] = {
    "model": {"name": "tiny-qwen", "source": "/models/tiny"},
    "input": "s3://llmbatch/in.jsonl",
    "output": "s3://llmbatch/out/",
}


def test_defaults_and_wire_form() -> None:
    spec = BatchJobSpec.model_validate(SPEC)
    assert spec.endpoint is Endpoint.CHAT_COMPLETIONS
    assert spec.completion_window == "24h"
    assert spec.parallelism == 1
    assert spec.max_retries == 3
    assert spec.resources.gpu == 1
    assert spec.resources.gpu_resource_name == "nvidia.com/gpu"
    wire = spec.to_k8s()
    assert wire["completionWindow"] == "24h"
    assert wire["maxRetries"] == 3
    assert wire["resources"]["gpuResourceName"] == "nvidia.com/gpu"
    assert "runnerImage" not in wire  # unset optionals stay out of the object
    assert BatchJobSpec.model_validate(wire) == spec


def test_snake_case_names_are_accepted_in_code() -> None:
    spec = BatchJobSpec(**SPEC, completion_window="1h", max_retries=0)
    assert spec.to_k8s()["completionWindow"] == "1h"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"completionWindow": "1x"}, "completionWindow"),
        ({"completionWindow": "0h"}, "completionWindow"),
        ({"parallelism": 0}, "parallelism"),
        ({"endpoint": "/v1/moderations"}, "endpoint"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_spec_rejects_bad_values(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        BatchJobSpec.model_validate(SPEC | patch)
    assert field in str(info.value)


def test_whole_object_ignores_server_fields() -> None:
    obj = BatchJob.model_validate(
        {
            "apiVersion": "llmbatch.io/v1alpha1",
            "kind": "BatchJob",
            "metadata": {"name": "a", "resourceVersion": "7"},
            "spec": SPEC,
            "status": {"phase": "Running", "progress": "1/2"},
        }
    )
    assert obj.status is not None
    assert obj.status.phase is Phase.RUNNING


def test_status_round_trip() -> None:
    status = BatchJobStatus.model_validate(
        {
            "phase": "Succeeded",
            "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
            "requestCounts": {"total": 2, "completed": 2},
        }
    )
    assert status.conditions[0].type == ConditionType.COMPLETE
    wire = status.to_k8s()
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert wire["requestCounts"] == {"total": 2, "completed": 2, "failed": 0}


def test_condition_accepts_other_types() -> None:
    # Conditions of other controllers (e.g. Kueue) must not break status parsing.
    assert Condition(type="QuotaReserved", status="True").type == "QuotaReserved"
    with pytest.raises(ValidationError):
        Condition.model_validate({"type": "Complete", "status": "yes"})


TERMINAL = {Phase.SUCCEEDED, Phase.FAILED, Phase.EXPIRED, Phase.CANCELLED}
OPENAI = {
    "Validating": "validating",
    "Queued": "in_progress",
    "Running": "in_progress",
    "Suspended": "in_progress",
    "Finalizing": "finalizing",
    "Succeeded": "completed",
    "Failed": "failed",
    "Expired": "expired",
    "Cancelling": "cancelling",
    "Cancelled": "cancelled",
}


@pytest.mark.parametrize("phase", list(Phase))
def test_phase_is_terminal(phase: Phase) -> None:
    assert phase.is_terminal() is (phase in TERMINAL)


@pytest.mark.parametrize("phase", list(Phase))
def test_phase_openai_status(phase: Phase) -> None:
    assert phase.openai_status() == OPENAI[phase.value]


def test_phases_are_the_documented_ones() -> None:
    assert {p.value for p in Phase} == set(OPENAI)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["24 hours", "1x", "", "h", "-1h", "0m", "1.5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert format_duration(timedelta(seconds=0)) == "0s"
