"""Split a byte stream into lines in fixed-size blocks, so memory does not grow with the file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def iter_lines(stream: _Readable, chunk_size: int) -> Iterator[bytes]:
    """Yield each line without its b"\\n"; a trailing unterminated line is yielded too."""
    pending = bytearray()
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        pieces = chunk.split(b"\n")
        if len(pieces) == 1:
            # Part of a long line: keep assembling it (memory ~ the longest line).
            pending += chunk
            continue
        pending += pieces[0]
        yield bytes(pending)
        pending.clear()
        yield from pieces[1:-1]
        pending += pieces[-1]
    if pending:
        yield bytes(pending)
