"""Segments and chunks: a segment's runnable lines, in feeding order, cut into chunks, each a
list of byte ranges of the input.

A segment holds at most ``segment_lines`` consecutive input lines, kept column-wise in arrays
(a few 8-byte ints per runnable line), so the plan's memory depends on the segment size, not
on the batch. A chunk closes at ``chunk_lines`` lines or ``chunk_bytes`` bytes; a group of lines
that share a prompt prefix and would fit a chunk of its own is not split when the current
chunk is at least half full: the chunk closes early instead.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from llmbatch.api.plan import ByteRange, Chunk
from llmbatch.runner.plan.grouping import PREFIX_LEVELS, grouped_order, shared_lines


@dataclass(frozen=True)
class ChunkLimits:
    lines: int
    bytes: int


@dataclass
class SegmentLines:
    """The runnable lines of segment ``index`` (input lines from ``first_line``), by position.

    ``ends[i]`` is where line i ends, its newline included; the input's last line may have
    none, so ranges are clamped to the input size when cut (see ``cut``)."""

    index: int
    first_line: int
    numbers: array[int] = field(default_factory=lambda: array("q"))
    offsets: array[int] = field(default_factory=lambda: array("q"))
    ends: array[int] = field(default_factory=lambda: array("q"))
    prompt_tokens: array[int] = field(default_factory=lambda: array("q"))
    completion_tokens: array[int] = field(default_factory=lambda: array("q"))
    keys: list[array[int]] = field(default_factory=lambda: [array("q") for _ in PREFIX_LEVELS])

    def add(self, number: int, offset: int, size: int, keys: Sequence[int]) -> int:
        """A runnable line (its number, where it starts, its size without the newline and its
        prefix keys); its position, by which ``set_tokens`` fills its counts later."""
        self.numbers.append(number)
        self.offsets.append(offset)
        self.ends.append(offset + size + 1)
        self.prompt_tokens.append(0)
        self.completion_tokens.append(0)
        for column, key in zip(self.keys, keys, strict=True):
            column.append(key)
        return len(self.numbers) - 1

    def set_tokens(self, position: int, tokens: tuple[int, int]) -> None:
        """(prompt tokens, most completion tokens) of the line at ``position``."""
        self.prompt_tokens[position], self.completion_tokens[position] = tokens

    def __len__(self) -> int:
        return len(self.numbers)


@dataclass(frozen=True)
class SegmentCut:
    chunks: list[Chunk]
    grouped_lines: int


def cut(
    segment: SegmentLines, limits: ChunkLimits, first_chunk: int, input_size: int
) -> SegmentCut:
    """The segment's chunks, numbered from ``first_chunk``. ``input_size``: bytes of the input
    read so far, which every range ends within (the last line may lack its newline)."""
    order, groups = grouped_order(segment.keys, len(segment))
    sizes = [
        min(end, input_size) - start
        for start, end in zip(segment.offsets, segment.ends, strict=True)
    ]
    chunks = [
        _chunk(segment, positions, sizes, first_chunk + number)
        for number, positions in enumerate(_split(order, groups, sizes, limits))
    ]
    return SegmentCut(chunks, shared_lines(groups))


def _split(
    order: list[int], groups: Sequence[int], sizes: Sequence[int], limits: ChunkLimits
) -> Iterator[list[int]]:
    """Positions in feeding order, cut into chunks (see the module doc)."""
    group_lines: Counter[int] = Counter()
    group_bytes: Counter[int] = Counter()
    for position in order:
        group_lines[groups[position]] += 1
        group_bytes[groups[position]] += sizes[position]
    current: list[int] = []
    current_bytes = 0
    previous_group = -1
    for position in order:
        group = groups[position]
        size = sizes[position]
        full = len(current) >= limits.lines or (current and current_bytes + size > limits.bytes)
        if not full and group != previous_group and current:
            full = _keep_group_whole(
                len(current), current_bytes, group_lines[group], group_bytes[group], limits
            )
        if full:
            yield current
            current, current_bytes = [], 0
        current.append(position)
        current_bytes += size
        previous_group = group
    if current:
        yield current


def _keep_group_whole(
    lines: int, size: int, group_lines: int, group_bytes: int, limits: ChunkLimits
) -> bool:
    """Close the chunk before a group starts when the group does not fit what is left, would
    fit a chunk of its own, and the chunk is already half full."""
    if group_lines < 2:
        return False
    fits_alone = group_lines <= limits.lines and group_bytes <= limits.bytes
    fits_here = lines + group_lines <= limits.lines and size + group_bytes <= limits.bytes
    half_full = 2 * lines >= limits.lines or 2 * size >= limits.bytes
    return fits_alone and not fits_here and half_full


def _chunk(segment: SegmentLines, positions: list[int], sizes: Sequence[int], index: int) -> Chunk:
    ranges: list[ByteRange] = []
    for position in positions:
        offset = segment.offsets[position]
        last = ranges[-1] if ranges else None
        if last is not None and last.offset + last.length == offset:
            last.length += sizes[position]
            last.lines += 1
        else:
            ranges.append(
                ByteRange(
                    offset=offset,
                    length=sizes[position],
                    first_line=segment.numbers[position],
                    lines=1,
                )
            )
    return Chunk(
        index=index,
        segment=segment.index,
        lines=len(positions),
        bytes=sum(sizes[p] for p in positions),
        prompt_tokens=sum(segment.prompt_tokens[p] for p in positions),
        max_completion_tokens=sum(segment.completion_tokens[p] for p in positions),
        ranges=ranges,
    )
