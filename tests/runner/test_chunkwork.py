"""A chunk's lines from its byte ranges: feeding order, skipped lines, few GETs, little
read for nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbatch.api.plan import ByteRange, Chunk
from llmbatch.runner.chunkwork import _spans, load_lines
from llmbatch.runner.parts import LineSet
from llmbatch.storage.local import LocalStore
from tests.runner.batches import chat_batch, write_lines


class CountingStore(LocalStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets: list[tuple[int, int]] = []

    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        self.gets.append((offset, length))
        return super().read_range(uri, offset, length)


def _line_ranges(path: Path) -> list[ByteRange]:
    ranges, offset = [], 0
    for number, raw in enumerate(path.read_bytes().splitlines(keepends=True), start=1):
        ranges.append(ByteRange(offset=offset, length=len(raw), first_line=number, lines=1))
        offset += len(raw)
    return ranges


def test_lines_come_in_the_chunks_order_without_the_skipped_ones(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(6))
    every = _line_ranges(source)
    # A prefix-grouped chunk: lines 3, 1, 2 in that order.
    chunk = Chunk(index=0, lines=3, ranges=[every[2], every[0], every[1]])
    skip = LineSet()
    skip.add(1)
    store = CountingStore()
    pending = load_lines(store, str(source), chunk, skip)
    assert [(r.lineno, r.custom_id) for r in pending] == [(3, "req-2"), (2, "req-1")]
    assert pending[0].body["messages"]
    assert len(store.gets) == 1  # adjacent: one GET


def test_scattered_ranges_read_little_for_nothing(tmp_path: Path) -> None:
    ranges = [
        ByteRange(offset=offset, length=100, first_line=n + 1, lines=1)
        for n, offset in enumerate(range(0, 100 * 1000, 1000))
    ]
    spans = _spans(ranges)
    read = sum(length for _, length, _ in spans)
    assert read <= 1.125 * 100 * 100  # the gaps between lines are not read
    close = [ByteRange(offset=o, length=100, first_line=1, lines=1) for o in (0, 105, 210)]
    assert len(_spans(close)) == 1


def test_a_range_that_no_longer_holds_its_lines_says_the_input_changed(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", chat_batch(3))
    whole = source.stat().st_size
    chunk = Chunk(
        index=0, lines=2, ranges=[ByteRange(offset=0, length=whole, first_line=1, lines=2)]
    )
    with pytest.raises(ValueError, match="input changed since the plan"):
        load_lines(LocalStore(), str(source), chunk, LineSet())
