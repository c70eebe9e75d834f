"""The S3 backend against moto: round trips, streaming, multipart, errors naming the URI."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from llmbatch.storage import (
    BucketNotFound,
    ObjectNotFound,
    StorageSettings,
    copy_object,
    get_store,
    join_uri,
)
from llmbatch.storage.s3 import S3Store
from llmbatch.storage.s3client import PartResult
from llmbatch.storage.s3writer import multipart_etag
from llmbatch.storage.settings import MIN_PART_SIZE
from tests.fixtures.s3 import S3Server


@pytest.fixture
def store(s3_settings: StorageSettings) -> S3Store:
    found = get_store("s3://any/key", s3_settings)
    assert isinstance(found, S3Store)
    return found


def test_round_trip_head_list_delete(store: S3Store, s3_bucket: str) -> None:
    root = f"s3://{s3_bucket}/job"
    store.write_bytes(join_uri(root, "a.txt"), b"alpha", content_type="text/plain")
    store.write_bytes(join_uri(root, "parts/p-1"), b"one")
    store.write_bytes(join_uri(root, "parts/p-0"), b"zero")
    store.write_bytes(f"s3://{s3_bucket}/jobless", b"x")
    assert store.read_bytes(join_uri(root, "a.txt")) == b"alpha"
    assert [i.uri for i in store.list(root + "/")] == [
        join_uri(root, "a.txt"),
        join_uri(root, "parts/p-0"),
        join_uri(root, "parts/p-1"),
    ]
    assert [i.uri for i in store.list(join_uri(root, "par"))] == [
        join_uri(root, "parts/p-0"),
        join_uri(root, "parts/p-1"),
    ]
    info = store.head(join_uri(root, "a.txt"))
    assert info is not None
    assert (info.size, info.etag) == (5, hashlib.md5(b"alpha").hexdigest())
    assert info.last_modified is not None
    assert store.head(join_uri(root, "missing")) is None
    assert not store.exists(join_uri(root, "missing"))
    store.delete(join_uri(root, "a.txt"))
    store.delete(join_uri(root, "a.txt"))
    assert not store.exists(join_uri(root, "a.txt"))


def test_list_follows_pages(s3_server: S3Server, s3_bucket: str, s3_admin_client: Any) -> None:
    store = S3Store(s3_server.settings(list_page_size=7))
    client = s3_admin_client
    for i in range(30):
        client.put_object(Bucket=s3_bucket, Key=f"many/{i:05d}", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="other", Body=b"")
    listed = [info.uri for info in store.list(f"s3://{s3_bucket}/many/")]
    assert listed == [f"s3://{s3_bucket}/many/{i:05d}" for i in range(30)]
    assert len(list(store.list(f"s3://{s3_bucket}"))) == 31


def test_streaming_lines_with_a_5mb_line(s3_server: S3Server, s3_bucket: str) -> None:
    # A read block far smaller than the long line: it is assembled across blocks.
    store = S3Store(s3_server.settings(read_chunk_size=64 * 1024))
    long_line = b'{"x": "' + b"y" * (5 * 1024 * 1024) + b'"}'
    lines = [b"line %d" % i for i in range(20_000)]
    lines[7_000:7_000] = [long_line, b""]
    uri = f"s3://{s3_bucket}/in.jsonl"
    store.write_bytes(uri, b"\n".join(lines) + b"\n")
    assert list(store.read_lines(uri)) == lines


def test_open_write_multipart_and_abort(
    s3_server: S3Server, s3_bucket: str, s3_admin_client: Any
) -> None:
    store = S3Store(s3_server.settings(part_size=MIN_PART_SIZE))
    uri = f"s3://{s3_bucket}/out/output.jsonl"
    digest = hashlib.sha256()
    size = 0
    with store.open_write(uri) as handle:
        # Writes of odd sizes, so parts are cut inside writes.
        for i in range(200_000):
            line = b'{"custom_id": "req-%d", "v": "%s"}\n' % (i, b"z" * (i % 97))
            handle.write(line)
            digest.update(line)
            size += len(line)
    assert size > 3 * MIN_PART_SIZE
    info = store.head(uri)
    assert info is not None and info.size == size
    assert info.etag is not None and info.etag.endswith(f"-{-(-size // MIN_PART_SIZE)}")
    content = store.read_bytes(uri)
    assert hashlib.sha256(content).digest() == digest.digest()
    # The ETag a lost CompleteMultipartUpload answer is recognised by (see s3writer).
    chunks = [content[i : i + MIN_PART_SIZE] for i in range(0, size, MIN_PART_SIZE)]
    parts = [PartResult(n, hashlib.md5(c).hexdigest(), {}) for n, c in enumerate(chunks, 1)]
    assert info.etag == multipart_etag(parts)

    failed = f"s3://{s3_bucket}/out/failed.jsonl"
    with pytest.raises(RuntimeError), store.open_write(failed) as handle:
        handle.write(os.urandom(2 * MIN_PART_SIZE + 10))
        raise RuntimeError("the runner died mid-write")
    assert not store.exists(failed)
    uploads = s3_admin_client.list_multipart_uploads(Bucket=s3_bucket)
    assert uploads.get("Uploads", []) == []


def test_write_after_failure_is_refused(store: S3Store, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/x"
    with pytest.raises(KeyError), store.open_write(uri) as handle:
        raise KeyError("boom")
    with pytest.raises(ValueError):
        handle.write(b"late")
    assert not store.exists(uri)


def test_open_write_small_and_empty(store: S3Store, s3_bucket: str) -> None:
    small = f"s3://{s3_bucket}/small"
    with store.open_write(small) as handle:
        handle.write(b"tiny")
    assert store.read_bytes(small) == b"tiny"
    empty = f"s3://{s3_bucket}/empty"
    with store.open_write(empty):
        pass
    assert store.read_bytes(empty) == b""
    assert list(store.read_lines(empty)) == []


def test_write_if_absent(store: S3Store, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/out/manifest.json"
    assert store.write_bytes_if_absent(uri, b'{"a": 1}')
    assert store.write_bytes_if_absent(uri, b'{"a": 1}')
    assert not store.write_bytes_if_absent(uri, b'{"a": 2}')
    assert store.read_bytes(uri) == b'{"a": 1}'


def test_transfers_copy_and_prefix(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    store = S3Store(s3_server.settings(part_size=MIN_PART_SIZE))
    data = os.urandom(2 * MIN_PART_SIZE + 12345)
    source = tmp_path / "weights.bin"
    source.write_bytes(data)
    model = f"s3://{s3_bucket}/models/tiny"
    store.upload_file(source, join_uri(model, "weights.bin"))
    store.write_bytes(join_uri(model, "cfg/config.json"), b"{}")
    store.copy(join_uri(model, "weights.bin"), f"s3://{s3_bucket}/copies/w.bin")
    assert store.read_bytes(f"s3://{s3_bucket}/copies/w.bin") == data
    store.copy(join_uri(model, "cfg/config.json"), str(tmp_path / "copied.json"))
    assert (tmp_path / "copied.json").read_bytes() == b"{}"
    # Local to S3 through the local store's copy.
    copy_object(str(source), f"s3://{s3_bucket}/from-local.bin", store.settings)
    assert store.head(f"s3://{s3_bucket}/from-local.bin") is not None

    local = store.download_prefix(model, tmp_path / "cache")
    assert (local / "weights.bin").read_bytes() == data
    assert (local / "cfg" / "config.json").read_bytes() == b"{}"
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*")) == [
        "cfg",
        "config.json",
        "weights.bin",
    ]


def test_missing_key_and_bucket_name_the_uri(
    store: S3Store, s3_bucket: str, tmp_path: Path
) -> None:
    key = f"s3://{s3_bucket}/no/such/input.jsonl"
    bucket = "s3://no-such-bucket-llmbatch/input.jsonl"
    for call in (
        lambda uri: store.read_bytes(uri),
        lambda uri: list(store.read_lines(uri)),
        lambda uri: store.download_file(uri, tmp_path / "x"),
        lambda uri: store.copy(uri, f"s3://{s3_bucket}/dst"),
    ):
        with pytest.raises(ObjectNotFound, match=re.escape(key)):
            call(key)
        with pytest.raises(BucketNotFound, match=re.escape(bucket)):
            call(bucket)
    with pytest.raises(BucketNotFound, match="no-such-bucket-llmbatch"):
        store.head(bucket)
    with pytest.raises(BucketNotFound, match="no-such-bucket-llmbatch"):
        list(store.list("s3://no-such-bucket-llmbatch/prefix/"))
    with pytest.raises(BucketNotFound, match="no-such-bucket-llmbatch"):
        store.write_bytes(bucket, b"x")
    with (
        pytest.raises(BucketNotFound, match="no-such-bucket-llmbatch"),
        store.open_write(bucket) as handle,
    ):
        handle.write(b"x")
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(BucketNotFound, match="no-such-bucket-llmbatch"):
        store.upload_file(source, bucket)
    with pytest.raises(ObjectNotFound, match="no/such"):
        store.download_prefix(f"s3://{s3_bucket}/no/such/", tmp_path / "d")
