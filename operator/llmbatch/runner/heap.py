"""Hand the C heap's free pages back to the system between chunks.

A shard runs the engine in its own process for hours. Each step allocates and frees
tensors and buffers of varying sizes from glibc's malloc; the freed memory stays in
fragmented arenas, so the resident size grew by about 7 KB per answered line on the
scale benchmark's input (1.7 GB after engine start, 3.1 GB after 200,000 lines) although
nothing was live. ``malloc_trim(0)`` returns those pages: with it after every chunk the
same run levelled off at 2.0 GB from about 120,000 lines on (see benchmarks/RESULTS.md).

It walks every arena (tens of milliseconds on a large heap), so it runs at most once per
``min_interval`` seconds. On a libc without it (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

_Trim = Callable[[int], int]


def _load_malloc_trim() -> _Trim | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` when asked, at most once per ``min_interval`` seconds."""

    def __init__(
        self,
        min_interval: float = 5.0,
        trim: _Trim | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_interval = min_interval
        self._trim = trim if trim is not None else _load_malloc_trim()
        self._clock = clock
        self._last: float | None = None
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def maybe_trim(self) -> bool:
        """Trim now unless the last trim was less than ``min_interval`` ago; True if trimmed."""
        if self._trim is None:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < self.min_interval:
            return False
        self._last = now
        self._trim(0)
        self.trims += 1
        return True
