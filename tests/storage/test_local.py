"""The local backend (file:// and plain paths) and the URI helpers."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from llmbatch.storage import (
    ObjectNotFound,
    StorageError,
    StorageSettings,
    get_store,
    join_uri,
    parse_uri,
)
from llmbatch.storage.local import LocalStore


@pytest.mark.parametrize(
    ("prefix", "parts", "expected"),
    [
        ("s3://b/out", ("parts", "p-0.jsonl"), "s3://b/out/parts/p-0.jsonl"),
        ("s3://b/out/", ("/parts/", "p-0.jsonl"), "s3://b/out/parts/p-0.jsonl"),
        ("s3://b", ("manifest.json",), "s3://b/manifest.json"),
        ("s3://b/", ("progress/shard-0.json",), "s3://b/progress/shard-0.json"),
        ("file:///tmp/x", ("a",), "file:///tmp/x/a"),
        ("out", ("a", "", "b"), "out/a/b"),
    ],
)
def test_join_uri(prefix: str, parts: tuple[str, ...], expected: str) -> None:
    assert join_uri(prefix, *parts) == expected


def test_parse_uri() -> None:
    assert parse_uri("s3://bucket/a/b.jsonl").bucket == "bucket"
    assert parse_uri("s3://bucket/a/b.jsonl").key == "a/b.jsonl"
    assert parse_uri("s3://bucket").key == ""
    assert parse_uri("file:///tmp/a").key == "/tmp/a"
    assert parse_uri("file://localhost/tmp/a").key == "/tmp/a"
    assert parse_uri("rel/path.jsonl").key == "rel/path.jsonl"
    for bad in ("s3:///key", "gs://b/k", "file://host/x", ""):
        with pytest.raises(StorageError):
            parse_uri(bad)


def test_settings_from_env_and_secret_hidden() -> None:
    settings = StorageSettings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://e:9000",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "AK",
            "AWS_SECRET_ACCESS_KEY": "very-secret",
        }
    )
    assert settings.endpoint_url == "http://e:9000"
    assert settings.region == "eu-west-1"
    assert settings.effective_addressing_style == "path"
    assert "very-secret" not in repr(settings)
    assert StorageSettings.from_env({}).effective_region == "us-east-1"


@pytest.fixture(params=["path", "uri"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path) if request.param == "path" else "file://" + str(tmp_path)


def test_round_trip_and_list(root: str) -> None:
    store = get_store(root)
    assert isinstance(store, LocalStore)
    store.write_bytes(join_uri(root, "out/a.txt"), b"alpha")
    store.write_bytes(join_uri(root, "out/parts/p-1"), b"one")
    store.write_bytes(join_uri(root, "out/parts/p-0"), b"zero")
    store.write_bytes(join_uri(root, "outside"), b"x")
    assert store.read_bytes(join_uri(root, "out/a.txt")) == b"alpha"
    listed = [info.uri for info in store.list(join_uri(root, "out") + "/")]
    assert listed == [
        join_uri(root, "out/a.txt"),
        join_uri(root, "out/parts/p-0"),
        join_uri(root, "out/parts/p-1"),
    ]
    # A string prefix, as in S3.
    assert [i.uri for i in store.list(join_uri(root, "out/par"))] == listed[1:]
    assert [i.uri for i in store.list(join_uri(root, "nothing/here/"))] == []
    info = store.head(join_uri(root, "out/a.txt"))
    assert info is not None and info.size == 5 and info.etag
    assert store.head(join_uri(root, "out/missing")) is None
    assert store.exists(join_uri(root, "outside"))
    store.delete(join_uri(root, "outside"))
    store.delete(join_uri(root, "outside"))
    assert not store.exists(join_uri(root, "outside"))


def test_relative_plain_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = get_store("rel/x.txt")
    store.write_bytes("rel/x.txt", b"1")
    store.write_bytes("rel/y/z.txt", b"2")
    store.write_bytes("top.txt", b"3")
    assert [i.uri for i in store.list("rel/")] == ["rel/x.txt", "rel/y/z.txt"]
    assert [i.uri for i in store.list("to")] == ["top.txt"]


def test_read_lines_long_line_and_edges(tmp_path: Path) -> None:
    store = LocalStore(read_chunk_size=64 * 1024)
    long_line = b"x" * (5 * 1024 * 1024)
    lines = [b"first", b"", long_line, b"with\r", b"last-no-newline"]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines))
    assert list(store.read_lines(str(path))) == lines
    path.write_bytes(b"")
    assert list(store.read_lines(str(path))) == []
    path.write_bytes(b"a\nb\n")
    assert list(store.read_lines(str(path))) == [b"a", b"b"]


def test_open_write_is_atomic(tmp_path: Path) -> None:
    store = get_store(str(tmp_path))
    target = str(tmp_path / "deep" / "obj.bin")
    with pytest.raises(RuntimeError), store.open_write(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("writer died")
    assert not store.exists(target)
    assert os.listdir(tmp_path / "deep") == []
    with store.open_write(target) as handle:
        for i in range(1000):
            handle.write(b"%d\n" % i)
    assert store.read_bytes(target).count(b"\n") == 1000


def test_write_if_absent(tmp_path: Path) -> None:
    store = get_store(str(tmp_path))
    uri = str(tmp_path / "m" / "manifest.json")
    assert store.write_bytes_if_absent(uri, b"{}")
    # Identical content: the earlier write stands (idempotent re-run).
    assert store.write_bytes_if_absent(uri, b"{}")
    assert not store.write_bytes_if_absent(uri, b'{"other": 1}')
    assert store.read_bytes(uri) == b"{}"
    assert os.listdir(tmp_path / "m") == ["manifest.json"]


def test_missing_object_names_uri(tmp_path: Path) -> None:
    store = get_store(str(tmp_path))
    missing = "file://" + str(tmp_path / "nope.jsonl")
    with pytest.raises(ObjectNotFound, match=re.escape(missing)):
        store.read_bytes(missing)
    with pytest.raises(ObjectNotFound, match=re.escape(missing)):
        list(store.read_lines(missing))
    with pytest.raises(ObjectNotFound, match=re.escape(missing)):
        store.download_file(missing, tmp_path / "x")


def test_copy_upload_download_prefix(tmp_path: Path) -> None:
    store = get_store(str(tmp_path))
    data = os.urandom(300_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    store.upload_file(src, str(tmp_path / "model" / "w.bin"))
    store.copy(str(tmp_path / "model" / "w.bin"), str(tmp_path / "model" / "sub" / "c.bin"))
    out = store.download_prefix(str(tmp_path / "model"), tmp_path / "dl")
    assert hashlib.sha256((out / "w.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    assert (out / "sub" / "c.bin").read_bytes() == data
    with pytest.raises(ObjectNotFound):
        store.download_prefix(str(tmp_path / "absent"), tmp_path / "dl2")
