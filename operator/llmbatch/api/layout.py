"""Where one BatchJob's files live under its output prefix: the object layout shared by the
runner (writes), finalize (merges), the operator (reads progress and the manifest), the
gateway and the CLI (download results).

    <output>/output.jsonl                           one line per answered request
    <output>/errors.jsonl                           one line per failed request
    <output>/manifest.json                          counts, usage, hashes, timing (immutable)
    <output>/checkpoints/shard-<i>.json             a shard's summary of its committed parts
    <output>/progress/shard-<i>.json                a shard's live counters for the status
    <output>/plan/plan.json, plan/chunks/chunk-<n>.json  the immutable plan (api/plan.py)
    <output>/parts/plan/errors-<k>.jsonl            the plan step's error records
    <output>/parts/chunk-<n>/part-<s>-<writer>.jsonl  a chunk's committed records
    <output>/leases/chunk-<n>.json                  who works a chunk (conditional writes)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OUTPUT_FILE = "output.jsonl"
ERRORS_FILE = "errors.jsonl"
MANIFEST_FILE = "manifest.json"
PARTS_DIR = "parts"
CHECKPOINTS_DIR = "checkpoints"
PROGRESS_DIR = "progress"
PLAN_DIR = "plan"
LEASES_DIR = "leases"
# The files a finished batch is read through, in the order people look at them.
RESULT_FILES = (OUTPUT_FILE, ERRORS_FILE, MANIFEST_FILE)

_PART_NAME = re.compile(r"part-(\d+)(?:-[0-9a-f]+)?\.jsonl$")
_SHARD_DOCUMENT = re.compile(r"(?:^|/)shard-(\d+)\.json$")


def shard_name(shard: int) -> str:
    return f"shard-{shard}"


def part_name(number: int, writer: str = "") -> str:
    return f"part-{number:06d}-{writer}.jsonl" if writer else f"part-{number:06d}.jsonl"


def chunk_name(chunk: int) -> str:
    return f"chunk-{chunk:06d}"


def part_number(uri: str) -> int | None:
    """The part's sequence number from its object name; None for anything that is no part."""
    match = _PART_NAME.search(uri)
    return int(match.group(1)) if match else None


def document_shard(uri: str) -> int | None:
    """The shard a ``shard-<i>.json`` progress or checkpoint object belongs to."""
    match = _SHARD_DOCUMENT.search(uri)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class OutputLayout:
    """The URIs under one output prefix (``s3://bucket/key/``, ``file:///abs/dir`` or a path).

    Joins with single slashes whatever the prefix ends with, like ``storage.join_uri``; the
    api package imports nothing else from the product, so it carries its own join."""

    prefix: str

    def _join(self, *parts: str) -> str:
        base = self.prefix if self.prefix.endswith("/") else self.prefix + "/"
        return base + "/".join(part.strip("/") for part in parts)

    @property
    def output_file(self) -> str:
        return self._join(OUTPUT_FILE)

    @property
    def errors_file(self) -> str:
        return self._join(ERRORS_FILE)

    @property
    def manifest(self) -> str:
        return self._join(MANIFEST_FILE)

    def result(self, name: str) -> str:
        """One of RESULT_FILES by name."""
        if name not in RESULT_FILES:
            raise ValueError(f"{name!r} is not one of {', '.join(RESULT_FILES)}")
        return self._join(name)

    @property
    def parts_dir(self) -> str:
        """Prefix (ending in ``/``) of every part: the chunks' and the plan's."""
        return self._join(PARTS_DIR) + "/"

    @property
    def checkpoints_dir(self) -> str:
        return self._join(CHECKPOINTS_DIR) + "/"

    def checkpoint(self, shard: int) -> str:
        return self._join(CHECKPOINTS_DIR, shard_name(shard) + ".json")

    @property
    def progress_dir(self) -> str:
        return self._join(PROGRESS_DIR) + "/"

    def progress(self, shard: int) -> str:
        return self._join(PROGRESS_DIR, shard_name(shard) + ".json")

    @property
    def plan_dir(self) -> str:
        return self._join(PLAN_DIR) + "/"

    @property
    def plan_summary(self) -> str:
        return self._join(PLAN_DIR, "plan.json")

    @property
    def chunks_dir(self) -> str:
        return self._join(PLAN_DIR, "chunks") + "/"

    def chunk(self, index: int) -> str:
        return self._join(PLAN_DIR, "chunks", chunk_name(index) + ".json")

    @property
    def plan_errors_dir(self) -> str:
        return self._join(PARTS_DIR, PLAN_DIR) + "/"

    def plan_errors_part(self, number: int) -> str:
        return self._join(PARTS_DIR, PLAN_DIR, f"errors-{number:06d}.jsonl")

    def chunk_parts_dir(self, index: int) -> str:
        return self._join(PARTS_DIR, chunk_name(index)) + "/"

    def chunk_part(self, index: int, number: int, writer: str = "") -> str:
        return self._join(PARTS_DIR, chunk_name(index), part_name(number, writer))

    @property
    def leases_dir(self) -> str:
        return self._join(LEASES_DIR) + "/"

    def lease(self, index: int) -> str:
        return self._join(LEASES_DIR, chunk_name(index) + ".json")
