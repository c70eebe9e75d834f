"""The plan of one batch: what the plan step found in the input and how the work is cut.

The plan step streams the input once, validates every line, writes the invalid lines' error
records as a part of their own, counts prompt tokens and cuts the runnable lines into chunks
(work units of about a thousand lines or a few MB). Shards claim chunks through leases and
read only their chunks' byte ranges. Under ``<output>/`` (see ``layout.py``):

    plan/chunks/chunk-<n>.json   one Chunk per work unit, written first
    plan/plan.json               the PlanSummary, written last: the plan exists once it does
    parts/plan/errors-<k>.jsonl  the invalid lines' error records (merged by finalize)
    leases/chunk-<n>.json        a ChunkLease while a shard works the chunk, "done" after
    parts/chunk-<n>/part-<s>-<writer>.jsonl  a chunk's committed records

The plan is immutable: a plan step that finds plan.json present does nothing, and one that
crashed half-way rewrites the same chunks (the cut is a pure function of the input).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmbatch.api.documents import Document

PLAN_VERSION = 1
# How prompt tokens were counted: the model's own tokenizer and chat template, or the
# documented estimate of api.tokens when the model's files are not readable by the plan step.
TokenCounter = Literal["tokenizer", "estimate"]
LeaseState = Literal["held", "done"]


class ByteRange(Document):
    """Contiguous bytes of the input holding ``lines`` runnable lines, the first of which is
    input line ``first_line`` (1-based, counting every physical line). A range never holds a
    blank or invalid line: those are cut out. The bytes include each line's newline (the
    input's last line may have none), so splitting them on b"\\n" gives the lines."""

    offset: int = Field(ge=0)
    length: int = Field(ge=1)
    first_line: int = Field(ge=1)
    lines: int = Field(ge=1)


class Chunk(Document):
    """One work unit. Its ranges are in the order the runner feeds the engine (lines that
    share a prompt prefix are adjacent); finalize restores input line order."""

    index: int = Field(ge=0)
    # Chunks of one segment hold only that segment's lines: finalize merges segment by
    # segment, so its memory does not grow with the batch.
    segment: int = Field(default=0, ge=0)
    lines: int = Field(ge=0)
    bytes: int = Field(default=0, ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    max_completion_tokens: int = Field(default=0, ge=0)
    ranges: list[ByteRange] = Field(default_factory=list)


class Segment(Document):
    """A run of consecutive input lines [first_line, last_line] and the chunks cut from it."""

    index: int = Field(ge=0)
    first_line: int = Field(ge=1)
    last_line: int = Field(ge=0)
    first_chunk: int = Field(ge=0)
    chunks: int = Field(ge=0)


class PlanSummary(Document):
    version: int = PLAN_VERSION
    input: str
    input_bytes: int = Field(default=0, ge=0)
    input_sha256: str | None = None
    # Physical lines of the input, blank ones included (line numbers count them).
    input_lines: int = Field(default=0, ge=0)
    # Lines that are requests: runnable ones plus invalid ones (blank lines are neither).
    total: int = Field(default=0, ge=0)
    runnable: int = Field(default=0, ge=0)
    invalid: int = Field(default=0, ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    max_completion_tokens: int = Field(default=0, ge=0)
    token_counter: TokenCounter = "estimate"
    chunk_count: int = Field(default=0, ge=0)
    chunk_lines: int = Field(default=1000, ge=1)
    chunk_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    segments: list[Segment] = Field(default_factory=list)
    # Lines placed next to others that share their prompt prefix.
    grouped_lines: int = Field(default=0, ge=0)
    error_parts: list[str] = Field(default_factory=list)
    endpoint: str | None = None
    model: str | None = None
    created_at: str | None = None
    runner_version: str | None = None


class ChunkLease(Document):
    """Who works a chunk. Created only if absent (If-None-Match), renewed and taken over only
    if unchanged (If-Match on the ETag read): two shards never hold one chunk at once."""

    chunk: int = Field(ge=0)
    state: LeaseState = "held"
    holder: str
    acquired_at: str | None = None
    renewed_at: str | None = None
    expires_at: str | None = None
    # How many times the lease passed to another holder after expiring.
    takeovers: int = Field(default=0, ge=0)
