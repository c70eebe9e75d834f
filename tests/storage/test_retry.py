"""Retry building blocks without a server: backoff, error mapping, resume and lost answers."""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

import botocore.exceptions
import pytest
import urllib3.exceptions

from llmbatch.storage import (
    AccessDenied,
    BucketNotFound,
    ObjectNotFound,
    PreconditionFailed,
    StorageError,
    StorageSettings,
)
from llmbatch.storage.retry import Backoff, is_transient, map_error
from llmbatch.storage.s3client import GetResult, HeadResult, PartResult
from llmbatch.storage.s3reader import ResumableReader
from llmbatch.storage.s3writer import MultipartSink, multipart_etag

URI = "s3://bucket/in.jsonl"


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} message"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


def no_sleep_backoff(attempts: int = 5) -> tuple[Backoff, list[float]]:
    slept: list[float] = []
    return Backoff(attempts, 0.1, 1.0, random.Random(1), slept.append), slept


def test_full_jitter_bounds() -> None:
    backoff = Backoff(10, 0.1, 2.0, random.Random(7))
    for attempt in range(10):
        ceiling = min(2.0, 0.1 * 2**attempt)
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(delays) < ceiling * 0.2 and max(delays) > ceiling * 0.8


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("NoSuchKey", 404), ObjectNotFound),
        (client_error("404", 404), ObjectNotFound),
        (client_error("NoSuchBucket", 404), BucketNotFound),
        (client_error("AccessDenied", 403), AccessDenied),
        (client_error("403", 403), AccessDenied),
        (client_error("InvalidAccessKeyId", 403), AccessDenied),
        (client_error("PreconditionFailed", 412), PreconditionFailed),
        (client_error("InvalidRange", 416), StorageError),
    ],
)
def test_error_mapping_names_the_uri(error: Exception, expected: type[StorageError]) -> None:
    mapped = map_error(error, URI, "read")
    assert type(mapped) is expected
    assert URI in str(mapped) and mapped.uri == URI


def test_transient_classification() -> None:
    assert is_transient(client_error("SlowDown", 503))
    assert is_transient(client_error("InternalError", 500))
    assert is_transient(client_error("Anything", 502))
    assert is_transient(botocore.exceptions.ReadTimeoutError(endpoint_url="x"))
    assert is_transient(urllib3.exceptions.ProtocolError("reset"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(client_error("NoSuchKey", 404))
    assert not is_transient(client_error("AccessDenied", 403))
    assert not is_transient(ValueError("bug"))


def test_backoff_call_retries_then_gives_up() -> None:
    backoff, slept = no_sleep_backoff(attempts=4)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise client_error("SlowDown", 503)
        return "ok"

    assert backoff.call(flaky, URI, "read") == "ok"
    assert len(calls) == 3 and len(slept) == 2

    def down() -> str:
        raise client_error("SlowDown", 503)

    with pytest.raises(StorageError, match=re.escape(URI)):
        backoff.call(down, URI, "read")

    permanent: list[int] = []

    def missing() -> str:
        permanent.append(1)
        raise client_error("NoSuchKey", 404)

    with pytest.raises(ObjectNotFound):
        backoff.call(missing, URI, "read")
    assert permanent == [1]


class CuttingBody:
    """A response body that breaks after `cut` bytes, like a reset connection."""

    def __init__(self, data: bytes, cut: int | None) -> None:
        self.data = data
        self.cut = cut
        self.offset = 0

    def read(self, amt: int | None = None) -> bytes:
        if self.cut is not None and self.offset >= self.cut:
            raise urllib3.exceptions.ProtocolError("Connection broken: reset by peer")
        end = len(self.data) if amt is None else self.offset + amt
        if self.cut is not None:
            end = min(end, self.cut)
        chunk = self.data[self.offset : end]
        self.offset += len(chunk)
        return chunk

    def close(self) -> None:
        pass


class FakeApi:
    """get_object that cuts each response after a few KiB; records the ranges asked for."""

    def __init__(self, data: bytes, etag: str = "abc") -> None:
        self.data = data
        self.etag = etag
        self.requests: list[tuple[int, str | None]] = []
        self.settings = StorageSettings()

    def get_object(
        self, bucket: str, key: str, start: int = 0, if_match: str | None = None
    ) -> GetResult:
        self.requests.append((start, if_match))
        if if_match is not None and if_match != self.etag:
            raise client_error("PreconditionFailed", 412)
        rest = self.data[start:]
        return GetResult(CuttingBody(rest, cut=7000), len(rest), len(self.data), self.etag)


def test_reader_resumes_from_the_byte_reached() -> None:
    data = b"".join(b"line %d\n" % i for i in range(10_000))
    api = FakeApi(data)
    backoff, _ = no_sleep_backoff(attempts=3)
    reader = ResumableReader(api, "bucket", "in.jsonl", URI, backoff)  # type: ignore[arg-type]
    assert reader.read() == data
    starts = [start for start, _ in api.requests]
    assert starts == list(range(0, len(data), 7000))
    # Every resumed request insists on the same version of the object.
    assert all(etag == "abc" for _, etag in api.requests[1:])


def test_reader_refuses_to_mix_versions() -> None:
    api = FakeApi(b"x" * 20_000)
    backoff, _ = no_sleep_backoff()
    reader = ResumableReader(api, "bucket", "in.jsonl", URI, backoff)  # type: ignore[arg-type]
    api.etag = "changed"
    with pytest.raises(PreconditionFailed, match=re.escape(URI)):
        reader.read()


class FakeMultipartApi:
    def __init__(self, stored_etag: str | None) -> None:
        self.settings = StorageSettings(part_size=4, write_concurrency=1)
        self.stored_etag = stored_etag
        self.aborted = False

    def create_multipart_upload(self, bucket: str, key: str, content_type: str) -> str:
        return "upload-1"

    def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes
    ) -> PartResult:
        return PartResult(number, f'"{hashlib.md5(data).hexdigest()}"', {})

    def complete_multipart_upload(self, bucket: str, key: str, upload_id: str, parts: Any) -> str:
        # As after a lost answer: S3 finished the upload, so it no longer knows the id.
        raise client_error("NoSuchUpload", 404)

    def head_object(self, bucket: str, key: str) -> HeadResult:
        if self.stored_etag is None:
            raise client_error("404", 404)
        return HeadResult(12, self.stored_etag, None)

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self.aborted = True


def _sink(api: FakeMultipartApi) -> MultipartSink:
    backoff, _ = no_sleep_backoff()
    return MultipartSink(api, "bucket", "out", "s3://bucket/out", backoff, "text/plain")  # type: ignore[arg-type]


def test_complete_after_lost_answer_is_recognised_by_etag() -> None:
    parts = [
        PartResult(i + 1, hashlib.md5(c).hexdigest(), {})
        for i, c in enumerate([b"abcd", b"efgh", b"ij"])
    ]
    sink = _sink(FakeMultipartApi(stored_etag=multipart_etag(parts)))
    sink.write(b"abcdefghij")
    sink.finish()
    assert sink.finished

    other = _sink(FakeMultipartApi(stored_etag="0123-3"))
    other.write(b"abcdefghij")
    with pytest.raises(StorageError, match="s3://bucket/out"):
        other.finish()
