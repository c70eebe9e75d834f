"""The shard's heap trimmer: rate-limited, and the real glibc call where there is one."""

from __future__ import annotations

import platform

import pytest

from llmbatch.runner.heap import HeapTrimmer


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
