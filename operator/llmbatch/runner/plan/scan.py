"""The plan's one pass over the input: physical lines with their byte offsets, and the
input's size and SHA-256 computed on the way (no second read to hash it)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from llmbatch.storage.lines import iter_lines

BLOCK = 1024 * 1024


@dataclass(frozen=True)
class PhysicalLine:
    """Input line ``number`` (1-based, blank lines counted) at byte ``offset``, without its
    newline."""

    number: int
    offset: int
    raw: bytes


class HashingReader:
    """Reads through ``source``, counting and hashing every byte."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.size = 0
        self._sha256 = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self.source.read(size)
        self._sha256.update(data)
        self.size += len(data)
        return data

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


def physical_lines(reader: HashingReader, block: int = BLOCK) -> Iterator[PhysicalLine]:
    offset = 0
    for number, raw in enumerate(iter_lines(reader, block), start=1):
        yield PhysicalLine(number, offset, raw)
        offset += len(raw) + 1
