"""Checkpointed output: a local spool sealed into immutable numbered parts in the store.

Layout under the output prefix (``llmbatch.api.layout``):
  parts/shard-<i>/part-<n>-<writer>.jsonl   records (see records.py), sorted by line number
  checkpoints/shard-<i>.json       summary of the shard's committed parts and counts

A part is committed the moment its object exists: both a restarted runner and finalize list
``parts/shard-<i>/`` and take every part found. The checkpoint record is a summary for people
and the operator, never the source of truth, so a kill between a part's upload and the
checkpoint write loses nothing and duplicates nothing: the part is adopted on restart.
Each attempt tags its parts with its own writer id, so even two attempts alive at once (a
pod on a lost node that still runs) never overwrite each other's parts; finalize keeps the
first answer for a line and drops the rest.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from llmbatch.api.documents import Document
from llmbatch.api.layout import OutputLayout, part_number
from llmbatch.runner.records import OUTPUT, Record, decode_record
from llmbatch.storage import ObjectStore

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


@dataclass
class Recovered:
    done: LineSet = field(default_factory=LineSet)
    tally: Tally = field(default_factory=Tally)
    parts: list[str] = field(default_factory=list)
    next_part: int = 0


def iter_part_records(store: ObjectStore, uri: str) -> Iterator[Record]:
    for raw in store.read_lines(uri):
        if raw.strip():
            yield decode_record(raw)


def recover(store: ObjectStore, output_uri: str, shard: int) -> Recovered:
    """What earlier attempts of this shard committed: every part present (see module doc)."""
    state = Recovered()
    for info in store.list(OutputLayout(output_uri).shard_parts_dir(shard)):
        number = part_number(info.uri)
        if number is None:
            continue
        state.parts.append(info.uri.rsplit("/", 1)[-1])
        state.next_part = max(state.next_part, number + 1)
        for record in iter_part_records(store, info.uri):
            if state.done.add(record.lineno):
                state.tally.add(record)
    return state


class Spool:
    """Records of the part being built, in a local file: memory stays flat between parts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.records = 0
        self._file: BinaryIO | None = None
        self._path: Path | None = None

    def add(self, record: Record) -> None:
        if self._file is None:
            fd, name = tempfile.mkstemp(prefix="spool-", suffix=".jsonl", dir=self.directory)
            self._file = os.fdopen(fd, "wb")
            self._path = Path(name)
        self._file.write(record.encode())
        self.records += 1

    def seal(self) -> Path | None:
        """Close the current spool file, sorted by line number; None if it holds nothing."""
        if self._file is None or self._path is None:
            return None
        self._file.close()
        path = self._path
        self._file, self._path, self.records = None, None, 0
        # One part holds at most one checkpoint interval of records, so sorting in memory
        # is bounded; sorted parts let finalize write output in input order within a part.
        lines = path.read_bytes().splitlines(keepends=True)
        lines.sort(key=lambda raw: int(raw.split(b" ", 1)[0]))
        path.write_bytes(b"".join(lines))
        return path


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
