"""Hand the C heap's free pages back to the system between chunks.

A shard runs the engine in its own process for hours. Each step allocates and frees
tensors and buffers of varying sizes from glibc's malloc; the freed memory stays in
fragmented arenas, so the resident size grew by about 7 KB per answered line on the
scale benchmark's input (1.7 GB after engine start, 3.1 GB after 200,000 lines) although
nothing was live. ``malloc_trim(0)`` returns those pages: with it after every chunk the
same run levelled off at 2.0 GB from about 120,000 lines on (see benchmarks/RESULTS.md).

It walks every arena (tens of milliseconds on a large heap), so it runs at most once per
``min_interval`` seconds. On a libc without it (musl, macOS) this does nothing.

Between trims the shard still swung by up to 300 MB: glibc serves a block of 128 KB or more
with its own mmap, but after such a block is freed it raises that threshold to the block's
size (up to 32 MB), so the engine's per-step tensors of a few MB then came from the arenas and
stayed there until the next trim. ``keep_large_blocks_mapped`` fixes the threshold at 1 MB:
those tensors go back to the system the moment they are freed, and a shard on the scale
benchmark's input held 1,780 MB +- 15 MB instead of swinging between 1,770 and 2,090 MB, at
the same rate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable

_Trim = Callable[[int], int]


# mallopt's parameter number for the mmap threshold (malloc.h).
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _load_malloc_trim() -> _Trim | None:
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    typed: _Trim = trim
    return typed


def keep_large_blocks_mapped(threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve every block of ``threshold`` bytes or more with its own mmap, for good (glibc's
    dynamic threshold off); True if set. A pod that sets the threshold itself (GLIBC_TUNABLES
    glibc.malloc.mmap_threshold, or MALLOC_MMAP_THRESHOLD_) keeps its own."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    if "glibc.malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


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
