"""Spec checks beyond the schema, as pure functions; the I/O part (Secret, object head) is in
``handle_validate``. Every message says what to fix."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.api.durations import parse_duration
from llmbatch.controller.backends import uses_rayjob


@dataclass(frozen=True)
class ValidationResult:
    ok: bool
    message: str = ""
    # A check that could not run (S3 or the API unreachable): retry, do not fail the batch.
    transient: bool = False
    input_size: int | None = None

    @classmethod
    def passed(cls, input_size: int | None = None) -> ValidationResult:
        return cls(
            ok=True, message="input, storage secret and model source checked", input_size=input_size
        )

    @classmethod
    def failed(cls, message: str) -> ValidationResult:
        return cls(ok=False, message=message)

    @classmethod
    def retry(cls, message: str) -> ValidationResult:
        return cls(ok=False, message=message, transient=True)


_HF = re.compile(r"^hf://[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
_S3 = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")


def check_model_source(source: str) -> str | None:
    """None when the source parses; otherwise what is wrong with it."""
    if source.startswith("hf://"):
        if not _HF.match(source) or ".." in source:
            return (
                f"spec.model.source {source!r} is not a Hugging Face id: "
                "use hf://org/name, e.g. hf://Qwen/Qwen2.5-0.5B-Instruct"
            )
        return None
    if source.startswith("s3://"):
        if not _S3.match(source):
            return f"spec.model.source {source!r} is not an s3://bucket/prefix URI"
        return None
    if source.startswith("/"):
        if "/../" in f"{source}/" or "\x00" in source:
            return f"spec.model.source {source!r} must be an absolute path without '..'"
        return None
    return (
        f"spec.model.source {source!r} is not supported: use hf://org/name, "
        "s3://bucket/prefix or an absolute path (e.g. a PVC mount)"
    )


def check_spec(spec: Mapping[str, Any]) -> tuple[BatchJobSpec | None, list[str]]:
    """Parse the spec and run the checks that need no I/O."""
    try:
        parsed = BatchJobSpec.model_validate(dict(spec))
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error["loc"])
            problems.append(f"spec.{where}: {error['msg']}")
        return None, problems
    problems = []
    model_problem = check_model_source(parsed.model.source)
    if model_problem:
        problems.append(model_problem)
    try:
        parse_duration(parsed.completion_window)
    except ValueError as exc:
        problems.append(f"spec.completionWindow: {exc}")
    if parsed.input.startswith("s3://") and parsed.input.endswith("/"):
        problems.append(f"spec.input {parsed.input!r} names a prefix; point it at the JSONL object")
    problems.extend(check_rayjob_form(parsed))
    return parsed, problems


def check_rayjob_form(spec: BatchJobSpec) -> list[str]:
    """spec.ray.workers runs the batch as one KubeRay RayJob, one shard whose Ray cluster is
    the parallelism: shard counts do not apply to it. (spec.ray without backend ray, and
    workers below 1, the schema refuses already.)"""
    if not uses_rayjob(spec):
        return []
    problems = []
    if spec.parallelism != 1:
        problems.append(
            f"spec.parallelism is {spec.parallelism}, but spec.ray.workers runs the batch as "
            "one KubeRay RayJob (one shard over the Ray cluster): set spec.parallelism to 1 and "
            "size the cluster with spec.ray.workers"
        )
    if spec.max_parallelism is not None:
        problems.append(
            "spec.maxParallelism adds shards as Indexed Jobs, which the KubeRay form "
            "(spec.ray.workers) does not run: remove spec.maxParallelism, or spec.ray.workers "
            "to scale one-pod shards instead"
        )
    return problems
