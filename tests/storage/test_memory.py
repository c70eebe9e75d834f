"""Streaming reads keep memory flat: the peak does not grow with the object's size.

The S3 measurement runs in a subprocess: moto serves from the test process and its own
buffers would count in a tracemalloc of this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import BinaryIO

from llmbatch.storage import get_store
from llmbatch.storage.settings import MIN_PART_SIZE, MiB
from tests.fixtures.s3 import S3Server

OBJECT_SIZE = 48 * MiB
PEAK_LIMIT = 4 * MiB

_CLIENT = """
import json, sys, tracemalloc
from llmbatch.storage import StorageSettings, get_store
uri = sys.argv[1]
store = get_store(uri, StorageSettings.from_env())
store.head(uri)  # boto3 loads its service model before measuring
tracemalloc.start()
lines = size = 0
for line in store.read_lines(uri):
    lines += 1
    size += len(line) + 1
print(json.dumps({"lines": lines, "bytes": size, "peak": tracemalloc.get_traced_memory()[1]}))
"""


def _line(i: int) -> bytes:
    return b'{"custom_id": "r%08d", "body": {"messages": "%s"}}\n' % (i, b"m" * (i % 200))


def _write(handle: BinaryIO) -> tuple[int, int]:
    lines = size = 0
    while size < OBJECT_SIZE:
        line = _line(lines)
        handle.write(line)
        lines += 1
        size += len(line)
    return lines, size


def test_s3_streaming_read_memory_is_bounded(s3_server: S3Server, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/big.jsonl"
    store = get_store(uri, s3_server.settings(part_size=MIN_PART_SIZE * 2))
    with store.open_write(uri) as handle:
        lines, size = _write(handle)
    try:
        result = subprocess.run(
            [sys.executable, "-c", _CLIENT, uri],
            env={**s3_server.env(), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        measured = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        store.delete(uri)
    assert (measured["lines"], measured["bytes"]) == (lines, size)
    print(f"S3 streaming peak: {measured['peak']} bytes for {size}")
    assert measured["peak"] < PEAK_LIMIT, f"peak {measured['peak']} bytes for {size} streamed"


def test_local_streaming_read_memory_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("wb") as handle:
        lines, size = _write(handle)
    store = get_store(str(path))
    tracemalloc.start()
    try:
        counted = sum(1 for _ in store.read_lines(str(path)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counted == lines
    print(f"local streaming peak: {peak} bytes for {size}")
    assert peak < PEAK_LIMIT, f"peak {peak} bytes for {size} streamed"
