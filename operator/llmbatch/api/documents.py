"""The JSON documents shards, finalize and the operator exchange through object storage:
a shard's progress (``progress/shard-<i>.json``), its checkpoint (``checkpoints/shard-<i>.json``)
and the batch's manifest (``manifest.json``). See ``layout.py`` for where they live.

Writers dump them with ``to_json()``; readers parse them with ``model_validate_json`` and
tolerate unknown fields (``extra="ignore"``), so an older operator can read a newer runner's
documents during an upgrade. Field names are camelCase on the wire, as in the status.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from pydantic.alias_generators import to_camel

# What a shard is doing, as its progress and checkpoint documents say.
ShardState = Literal["running", "done", "expired", "cancelled", "failed"]
# Why finalize ran: every shard finished ("none"), or the batch stopped early.
FinalizeReason = Literal["none", "expired", "cancelled"]


class Document(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")

    def to_json(self, *, indent: int | None = None) -> bytes:
        # Sorted keys: the same document always has the same bytes (the manifest is
        # content-addressed and compared across finalize races).
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True).encode()


class Counts(Document):
    # None in a shard's checkpoint, which counts what it finished, not its share: the key is
    # then left out, as the runner has always written it.
    total: int | None = Field(default=None, ge=0)
    completed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)

    @model_serializer(mode="wrap")
    def _omit_unknown_total(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("total") is None:
            data.pop("total", None)
        return data


class TokenUsage(Document):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


class ModelRef(Document):
    name: str | None = None
    source: str | None = None


class ShardProgress(Document):
    """A shard's live counters; the operator sums them into the BatchJob status."""

    shard: int = Field(ge=0)
    shard_count: int = Field(default=1, ge=1)
    state: ShardState = "running"
    # None until the shard has counted its share of the input.
    total: int | None = Field(default=None, ge=0)
    completed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    # Tokens/s of this attempt (not counting work resumed from a checkpoint).
    throughput: float = Field(default=0.0, ge=0.0)
    started_at: str | None = None
    updated_at: str | None = None
    attempt: int = Field(default=0, ge=0)


class ShardCheckpoint(Document):
    """A shard's summary of its committed parts: for people and the operator; the parts
    themselves are the source of truth (a kill between a part and its checkpoint loses
    nothing)."""

    shard: int = Field(ge=0)
    shard_count: int = Field(default=1, ge=1)
    state: ShardState = "running"
    attempt: int = Field(default=0, ge=0)
    parts: list[str] = Field(default_factory=list)
    request_counts: Counts = Field(default_factory=Counts)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    input: str | None = None
    model: ModelRef = Field(default_factory=ModelRef)
    endpoint: str | None = None
    engine_args: dict[str, Any] = Field(default_factory=dict)
    runner_version: str | None = None
    updated_at: str | None = None


class FileHashes(Document):
    input: str | None = None
    output: str | None = None
    errors: str | None = None


class Timing(Document):
    started_at: str | None = None
    run_finished_at: str | None = None
    finalized_at: str | None = None


class Manifest(Document):
    """What finalize wrote: immutable once it exists (the first finalize to write it wins)."""

    batch: str | None = None
    input: str | None = None
    output_file: str | None = None
    error_file: str | None = None
    endpoint: str | None = None
    model: ModelRef | None = None
    engine_args: dict[str, Any] | None = None
    shard_count: int = Field(default=1, ge=1)
    reason: FinalizeReason = "none"
    request_counts: Counts = Field(default_factory=Counts)
    # The runnable lines no shard answered, which finalize recorded as batch_expired or
    # batch_cancelled (``reason`` says which); 0 when every line had its result. None in a
    # manifest of a runner before this field: it does not say, so a batch finalized after
    # its deadline stays Expired (policy/deadline.py).
    unanswered: int | None = Field(default=None, ge=0)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    sha256: FileHashes = Field(default_factory=FileHashes)
    input_lines: int | None = Field(default=None, ge=0)
    timing: Timing = Field(default_factory=Timing)
    runner_version: str | None = None
    engine_version: str | None = None
