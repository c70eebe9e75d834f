"""Committed output: parts in the store, their records, and the writes behind them.

Layout under the output prefix (``llmbatch.api.layout``):
  parts/chunk-<n>/part-<s>-<writer>.jsonl   one chunk's records (records.py), sorted by line
  parts/plan/errors-<k>.jsonl              the plan step's error records
  checkpoints/shard-<i>.json, progress/shard-<i>.json   a shard's summary and live counters

A part is committed the moment its object exists: a shard resuming a chunk lists
``parts/chunk-<n>/`` and skips every line found, and finalize merges every part. Each holder
tags its parts with its own writer id, so two holders of one chunk (one that lost its lease
without knowing it yet) never overwrite each other's parts; finalize keeps the first answer
for a line and drops the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from llmbatch.api.documents import Document
from llmbatch.runner.records import OUTPUT, Record, decode_record
from llmbatch.storage import ObjectStore
from llmbatch.storage.lines import iter_lines

log = logging.getLogger(__name__)


class LineSet:
    """A set of positive line numbers as a growable bitmap: 1M lines cost 128 KB, not 40 MB."""

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0

    def add(self, lineno: int) -> bool:
        """Add; False if it was already there."""
        index, bit = divmod(lineno, 8)
        if index >= len(self._bits):
            self._bits.extend(bytes(index - len(self._bits) + 1 + len(self._bits) // 2))
        mask = 1 << bit
        if self._bits[index] & mask:
            return False
        self._bits[index] |= mask
        self.count += 1
        return True

    def __contains__(self, lineno: object) -> bool:
        if not isinstance(lineno, int):
            return False
        index, bit = divmod(lineno, 8)
        return index < len(self._bits) and bool(self._bits[index] & (1 << bit))


@dataclass
class Tally:
    completed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, record: Record) -> None:
        if record.kind == OUTPUT:
            self.completed += 1
        else:
            self.failed += 1
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens


def iter_part_records(store: ObjectStore, uri: str, block: int | None = None) -> Iterator[Record]:
    """A part's records, read ``block`` bytes at a time (finalize holds a segment's parts
    open at once, so it reads them in small blocks)."""
    with store.open_read(uri) as reader:
        for raw in iter_lines(reader, block or store.read_chunk_size):
            if raw.strip():
                yield decode_record(raw)


class Uploader:
    """Runs store writes on one background thread, in order, so the engine never waits on S3.

    A failed write is re-raised on the next call into the uploader (the shard then exits and
    is retried; the part it was writing is simply recomputed).
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmbatch-upload")
        self._futures: list[Future[None]] = []

    def submit(self, task: Callable[[], None]) -> None:
        self.raise_errors()
        self._futures.append(self._pool.submit(task))

    def raise_errors(self) -> None:
        remaining: list[Future[None]] = []
        for future in self._futures:
            if future.done():
                future.result()  # raises the task's exception
            else:
                remaining.append(future)
        self._futures = remaining

    def busy(self) -> int:
        return sum(1 for f in self._futures if not f.done())

    def drain(self) -> None:
        for future in self._futures:
            future.result()
        self._futures = []

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def write_document(store: ObjectStore, uri: str, document: Document) -> None:
    # Indented: people read checkpoints and progress in the bucket too.
    store.write_bytes(uri, document.to_json(indent=2), content_type="application/json")
