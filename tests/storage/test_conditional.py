"""Conditional writes and ranged reads on both backends (moto S3 and local files), and the
start-up probe that refuses a store ignoring them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmbatch.storage import (
    ConditionalWritesUnsupported,
    ObjectStore,
    PreconditionFailed,
    StorageSettings,
    check_conditional_writes,
    get_store,
)
from llmbatch.storage.local import LocalStore


@pytest.fixture(params=["s3", "local"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ObjectStore, str]:
    if request.param == "s3":
        settings: StorageSettings = request.getfixturevalue("s3_settings")
        bucket: str = request.getfixturevalue("s3_bucket")
        return get_store("s3://x/y", settings), f"s3://{bucket}/job"
    return LocalStore(), f"file://{tmp_path}/job"


def test_create_if_absent_then_write_if_match(root: tuple[ObjectStore, str]) -> None:
    store, prefix = root
    uri = f"{prefix}/leases/a.json"
    first = store.put_if_absent(uri, b"one")
    with pytest.raises(PreconditionFailed):
        store.put_if_absent(uri, b"two")
    # The same bytes again is our own earlier attempt whose answer was lost: accepted.
    assert store.put_if_absent(uri, b"one") == first
    current = store.read_versioned(uri)
    assert current is not None and current.data == b"one" and current.etag == first
    second = store.put_if_match(uri, b"three", first)
    assert second != first
    with pytest.raises(PreconditionFailed):
        store.put_if_match(uri, b"four", first)  # stale ETag
    assert store.read_bytes(uri) == b"three"
    assert store.read_versioned(f"{prefix}/leases/none.json") is None
    with pytest.raises(PreconditionFailed):
        store.put_if_match(f"{prefix}/leases/none.json", b"x", second)


def _race(attempt: Callable[[int], object], racers: int = 4) -> list[int]:
    """Start ``racers`` attempts at once; the numbers of those that were not refused."""
    wins: list[int] = []
    barrier = threading.Barrier(racers)

    def run(n: int) -> None:
        barrier.wait()
        try:
            attempt(n)
        except PreconditionFailed:
            return
        wins.append(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wins


def test_racing_creates_have_one_winner(root: tuple[ObjectStore, str]) -> None:
    store, prefix = root
    uri = f"{prefix}/leases/race.json"
    wins = _race(lambda n: store.put_if_absent(uri, f"holder {n}".encode()))
    assert len(wins) == 1
    assert store.read_bytes(uri) == f"holder {wins[0]}".encode()


def test_racing_replaces_on_one_etag_have_one_winner(root: tuple[ObjectStore, str]) -> None:
    store, prefix = root
    uri = f"{prefix}/leases/takeover.json"
    etag = store.put_if_absent(uri, b"expired")
    wins = _race(lambda n: store.put_if_match(uri, f"taken by {n}".encode(), etag))
    assert len(wins) == 1
    assert store.read_bytes(uri) == f"taken by {wins[0]}".encode()


def test_read_range(root: tuple[ObjectStore, str]) -> None:
    store, prefix = root
    uri = f"{prefix}/input.jsonl"
    store.write_bytes(uri, b"0123456789")
    assert store.read_range(uri, 2, 3) == b"234"
    assert store.read_range(uri, 0, 10) == b"0123456789"
    assert store.read_range(uri, 8, 5) == b"89"


def test_the_probe_passes_on_honest_stores(root: tuple[ObjectStore, str]) -> None:
    store, prefix = root
    check_conditional_writes(store, f"{prefix}/leases/.probe")
    assert store.read_versioned(f"{prefix}/leases/.probe") is None  # cleaned up


class _IgnoresConditions(LocalStore):
    """An S3-compatible server that ignores If-None-Match and If-Match: every PUT wins."""

    def put_if_absent(self, uri: str, data: bytes, content_type: str = "") -> str:
        self.write_bytes(uri, data)
        return "etag"

    def put_if_match(self, uri: str, data: bytes, etag: str, content_type: str = "") -> str:
        self.write_bytes(uri, data)
        return "etag"


class _IgnoresIfMatch(LocalStore):
    def put_if_match(self, uri: str, data: bytes, etag: str, content_type: str = "") -> str:
        self.write_bytes(uri, data)
        return "etag"


@pytest.mark.parametrize(
    ("store", "header"), [(_IgnoresConditions(), "If-None-Match"), (_IgnoresIfMatch(), "If-Match")]
)
def test_the_probe_refuses_a_store_that_ignores_conditions(
    tmp_path: Path, store: Any, header: str
) -> None:
    with pytest.raises(ConditionalWritesUnsupported, match=f"ignores {header}"):
        check_conditional_writes(store, f"{tmp_path}/leases/.probe")
