"""The shard's heap trimmer: rate-limited, and the real glibc call where there is one."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from llmbatch.runner.heap import HeapTrimmer, keep_large_blocks_mapped


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_trims_at_most_once_per_interval() -> None:
    calls: list[int] = []
    clock = Clock()
    heap = HeapTrimmer(min_interval=5.0, trim=lambda pad: calls.append(pad) or 1, clock=clock)
    assert heap.maybe_trim() is True
    clock.now += 4.9
    assert heap.maybe_trim() is False
    clock.now += 0.2
    assert heap.maybe_trim() is True
    assert calls == [0, 0]
    assert heap.trims == 2


def test_without_malloc_trim_it_does_nothing() -> None:
    heap = HeapTrimmer(trim=None)
    heap._trim = None  # as on a libc without malloc_trim (musl, macOS)
    assert heap.available is False
    assert heap.maybe_trim() is False
    assert heap.trims == 0


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is a glibc function; other C libraries do not have it",
)
def test_real_malloc_trim_is_found_and_runs_on_glibc() -> None:
    heap = HeapTrimmer(min_interval=0.0)
    assert heap.available
    assert heap.maybe_trim() is True
    assert heap.maybe_trim() is True
    assert heap.trims == 2


# A heap that fills with freed tensors: a 30 MB block (mapped, and once freed, glibc's dynamic
# threshold rises to 30 MB), then ten 3 MB blocks written and freed. Prints how much more is
# resident after the frees than before the ten blocks.
_FREED_BLOCKS = """
import ctypes, sys
from llmbatch.runner.heap import keep_large_blocks_mapped

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

if sys.argv[1] == "mapped":
    assert keep_large_blocks_mapped()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(30 << 20))
before = rss_kb()
blocks = [libc.malloc(3 << 20) for _ in range(10)]
for block in blocks:
    ctypes.memset(block, 1, 3 << 20)
for block in blocks:
    libc.free(block)
print((rss_kb() - before) // 1024)
"""


def _held_after_free(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES",)}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    done = subprocess.run(
        [sys.executable, "-c", _FREED_BLOCKS, mode], env=env, capture_output=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the dynamic mmap threshold and mallopt are glibc's",
)
def test_large_blocks_go_back_to_the_system_once_freed() -> None:
    # Without it the ten freed blocks stay in the heap (30 MB resident); with it, none.
    assert _held_after_free("dynamic") >= 20
    assert _held_after_free("mapped") <= 5


def test_a_pods_own_mmap_threshold_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=4194304")
    assert keep_large_blocks_mapped() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert keep_large_blocks_mapped() is False
