"""One claimed chunk while a shard works it: its lines read by ranged GETs, what earlier
holders already committed, and the records finished since.

A chunk's lines come from its byte ranges of the input (the plan validated them, so each is a
JSON request; blank and invalid lines are never inside a range). Nearby ranges are fetched as
one GET when the gap between them is small, so a prefix-grouped chunk whose lines are spread
over the input costs a handful of requests without reading much that is not its own.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from llmbatch.api.layout import OutputLayout, part_number
from llmbatch.api.plan import ByteRange, Chunk
from llmbatch.runner.parts import LineSet, iter_part_records
from llmbatch.runner.records import Record
from llmbatch.storage import ObjectStore

# Ranges closer than this are read as one GET (the gap is read and dropped).
COALESCE_GAP = 64 * 1024
# Ranged GETs of one chunk in flight at once.
READ_THREADS = 8


@dataclass(frozen=True)
class Runnable:
    lineno: int
    custom_id: str
    body: dict[str, Any]


@dataclass
class OpenChunk:
    """A chunk this shard holds: lines still to submit, lines in the engine, records done."""

    chunk: Chunk
    pending: deque[Runnable]
    next_part: int
    resumed_lines: int = 0
    in_flight: int = 0
    records: list[Record] = field(default_factory=list)
    lost: bool = False

    @property
    def index(self) -> int:
        return self.chunk.index

    @property
    def drained(self) -> bool:
        """Nothing left to submit and nothing in the engine: ready to commit."""
        return not self.pending and self.in_flight == 0

    def part_bytes(self) -> bytes:
        """The finished records sorted by line, as a part's content."""
        return b"".join(r.encode() for r in sorted(self.records, key=lambda r: r.lineno))


def committed(store: ObjectStore, layout: OutputLayout, index: int) -> tuple[LineSet, int]:
    """Lines already in the chunk's parts (an earlier holder's work) and the next part number."""
    done = LineSet()
    next_part = 0
    for info in store.list(layout.chunk_parts_dir(index)):
        number = part_number(info.uri)
        if number is None:
            continue
        next_part = max(next_part, number + 1)
        for record in iter_part_records(store, info.uri):
            done.add(record.lineno)
    return done, next_part


def _spans(ranges: list[ByteRange]) -> list[tuple[int, int, list[ByteRange]]]:
    """Ranges grouped into GETs: (offset, length, ranges inside), in offset order.

    A gap is read along only while it is small (COALESCE_GAP) and the bytes read for nothing
    stay under an eighth of the span's own: the shards together read the input about once.
    """
    spans: list[tuple[int, int, list[ByteRange]]] = []
    for byte_range in sorted(ranges, key=lambda r: r.offset):
        end = byte_range.offset + byte_range.length
        if spans:
            start, length, members = spans[-1]
            useful = sum(r.length for r in members) + byte_range.length
            wasted = (end - start) - useful
            if byte_range.offset - (start + length) <= COALESCE_GAP and wasted * 8 <= useful:
                spans[-1] = (start, max(length, end - start), [*members, byte_range])
                continue
        spans.append((byte_range.offset, byte_range.length, [byte_range]))
    return spans


def read_ranges(store: ObjectStore, uri: str, ranges: list[ByteRange]) -> dict[int, bytes]:
    """Each range's bytes, keyed by its offset."""
    spans = _spans(ranges)

    def fetch(span: tuple[int, int, list[ByteRange]]) -> dict[int, bytes]:
        start, length, members = span
        data = store.read_range(uri, start, length)
        return {r.offset: data[r.offset - start : r.offset - start + r.length] for r in members}

    found: dict[int, bytes] = {}
    if len(spans) == 1:
        found.update(fetch(spans[0]))
        return found
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(spans))) as pool:
        for part in pool.map(fetch, spans):
            found.update(part)
    return found


def _range_lines(byte_range: ByteRange, data: bytes) -> Iterator[tuple[int, bytes]]:
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    if len(lines) != byte_range.lines:
        raise ValueError(
            f"the input's bytes {byte_range.offset}+{byte_range.length} hold {len(lines)} "
            f"lines, the plan says {byte_range.lines}: the input changed since the plan"
        )
    yield from enumerate(lines, start=byte_range.first_line)


def load_lines(store: ObjectStore, uri: str, chunk: Chunk, skip: LineSet) -> deque[Runnable]:
    """The chunk's requests in its feeding order, without the lines in ``skip``."""
    data = read_ranges(store, uri, chunk.ranges)
    pending: deque[Runnable] = deque()
    for byte_range in chunk.ranges:
        for lineno, raw in _range_lines(byte_range, data[byte_range.offset]):
            if lineno in skip:
                continue
            request = json.loads(raw)
            pending.append(Runnable(lineno, str(request["custom_id"]), request["body"]))
    return pending
