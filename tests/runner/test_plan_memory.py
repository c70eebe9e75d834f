"""The plan's memory does not grow with the batch: duplicate custom_ids are found in an index on
disk, and what the plan keeps in memory is one segment's few ints per line."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from llmbatch.runner.plan import step
from llmbatch.runner.plan.dupindex import DiskIdSet
from tests.runner.plan_check import plan_file


def request(custom_id: str) -> str:
    body = {"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}]}
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    return json.dumps(line)


def ids_with_duplicates(count: int) -> list[str]:
    """Every 1,000th id repeats one 500 lines earlier."""
    return [f"id-{i - 500 if i % 1000 == 999 else i}" for i in range(count)]


def peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_disk_index_finds_duplicates_among_200000_ids_in_little_memory(tmp_path: Path) -> None:
    ids = ids_with_duplicates(200_000)
    found: list[str] = []

    def run() -> None:
        with DiskIdSet(tmp_path) as seen:
            for custom_id in ids:
                if custom_id in seen:
                    found.append(custom_id)
                else:
                    seen.add(custom_id)
            # The ids are in the file, not in the process.
            assert seen.path.parent == tmp_path
            assert seen.path.stat().st_size > 200_000 * 8
            assert seen.count == 200_000 - 200

    # A set of these 200,000 ids alone takes ~20 MB of Python objects.
    assert peak_bytes(run) < 2 * 1024 * 1024
    assert found == [f"id-{i - 500}" for i in range(999, 200_000, 1000)]
    assert not (tmp_path / "custom-ids.sqlite").exists()


def test_plan_memory_does_not_grow_with_the_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexes: list[tuple[Path, int]] = []

    class Watched(DiskIdSet):
        def close(self) -> None:
            assert self.path.is_file()
            indexes.append((self.path, self.count))
            super().close()

    monkeypatch.setattr(step, "DiskIdSet", Watched)
    peaks = {}
    for count in (8_000, 32_000):
        path = tmp_path / f"in-{count}.jsonl"
        path.write_text("".join(request(i) + "\n" for i in ids_with_duplicates(count)))
        out = tmp_path / f"out-{count}"
        peaks[count] = peak_bytes(partial(plan_file, path, out, segment_lines=4_000))
        summary = plan_file(path, out).summary
        assert (summary.invalid, summary.runnable) == (count // 1000, count - count // 1000)
    # The index was a file (in a scratch directory, not the output), holding every distinct id,
    # and is gone after the plan.
    path, distinct = indexes[-1]
    assert distinct == 32_000 - 32 and tmp_path not in path.parents
    assert not path.exists()
    # Four times the lines, the same peak (within 1 MB): nothing kept per line of the input.
    assert peaks[32_000] - peaks[8_000] < 1024 * 1024, peaks
