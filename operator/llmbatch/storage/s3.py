"""The S3 backend (AWS, MinIO, moto): boto3 with our retry layer, streaming both ways."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

import botocore.exceptions

from llmbatch.storage.base import ObjectInfo, ObjectStore, Versioned
from llmbatch.storage.errors import (
    AccessDenied,
    BucketNotFound,
    ObjectNotFound,
    PreconditionFailed,
    StorageError,
)
from llmbatch.storage.retry import Backoff, client_error_code, is_transient
from llmbatch.storage.s3client import HeadResult, S3Api
from llmbatch.storage.s3reader import ResumableReader
from llmbatch.storage.s3writer import MultipartSink
from llmbatch.storage.settings import StorageSettings
from llmbatch.storage.uri import ParsedUri, parse_uri

T = TypeVar("T")
_WRITE_BUFFER = 256 * 1024


class S3Store(ObjectStore):
    def __init__(self, settings: StorageSettings, api: S3Api | None = None) -> None:
        self.settings = settings
        self.api = api if api is not None else S3Api(settings)
        self.read_chunk_size = settings.read_chunk_size

    def backoff(self, attempts: int | None = None) -> Backoff:
        settings = self.settings
        return Backoff(
            settings.request_attempts if attempts is None else attempts,
            settings.backoff_base,
            settings.backoff_cap,
        )

    def stream_backoff(self) -> Backoff:
        return self.backoff(self.settings.stream_attempts)

    # Reading -------------------------------------------------------------------------------

    def open_read(self, uri: str) -> BinaryIO:
        target = _s3(uri)
        raw = self._call(
            uri,
            lambda: ResumableReader(
                self.api, target.bucket, target.key, uri, self.stream_backoff(), self.backoff()
            ),
        )
        return io.BufferedReader(raw, buffer_size=self.read_chunk_size)

    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        target = _s3(uri)

        def fetch() -> bytes:
            # Inside the retry: a body cut mid-read is fetched again whole.
            result = self.api.get_object(target.bucket, target.key, offset, length=length)
            try:
                return result.body.read()
            finally:
                result.body.close()

        return self._call(uri, fetch, "ranged read")

    def read_versioned(self, uri: str) -> Versioned | None:
        target = _s3(uri)

        def fetch() -> Versioned:
            result = self.api.get_object(target.bucket, target.key)
            try:
                return Versioned(result.body.read(), result.etag)
            finally:
                result.body.close()

        try:
            return self._call(uri, fetch)
        except ObjectNotFound:
            return None

    def head(self, uri: str) -> ObjectInfo | None:
        target = _s3(uri)
        try:
            result = self._call(
                uri, lambda: self.api.head_object(target.bucket, target.key), "head"
            )
        except ObjectNotFound:
            return None
        return _info(uri, result)

    def list(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        target = _s3(prefix_uri)
        token: str | None = None

        def page(
            after: str | None,
        ) -> Callable[[], tuple[list[tuple[str, HeadResult]], str | None]]:
            return lambda: self.api.list_page(target.bucket, target.key, after)

        while True:
            items, token = self._call(prefix_uri, page(token), "list")
            for key, result in items:
                yield _info(f"s3://{target.bucket}/{key}", result)
            if token is None:
                return

    # Writing -------------------------------------------------------------------------------

    def write_bytes(
        self, uri: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        target = _s3(uri)
        # One PUT: S3 shows the object whole or not at all.
        self._call(
            uri,
            lambda: self.api.put_object(target.bucket, target.key, data, content_type),
            "write",
        )

    def write_bytes_if_absent(
        self, uri: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> bool:
        target = _s3(uri)
        # HEAD first as well: some S3-compatible servers ignore If-None-Match.
        if self.head(uri) is not None:
            return self.read_bytes(uri) == data
        try:
            self._call(
                uri,
                lambda: self.api.put_object(
                    target.bucket, target.key, data, content_type, if_none_match=True
                ),
                "conditional write",
            )
        except PreconditionFailed:
            # Someone got there first, or our own earlier attempt did and its answer was lost.
            return self.read_bytes(uri) == data
        return True

    def put_if_absent(
        self, uri: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        return self._conditional_put(uri, data, content_type, None)

    def put_if_match(
        self, uri: str, data: bytes, etag: str, content_type: str = "application/octet-stream"
    ) -> str:
        return self._conditional_put(uri, data, content_type, etag)

    def _conditional_put(
        self, uri: str, data: bytes, content_type: str, if_match: str | None
    ) -> str:
        """If-Match ``if_match``, or If-None-Match: * when it is None."""
        target = _s3(uri)

        def put() -> str:
            return self.api.put_object(
                target.bucket,
                target.key,
                data,
                content_type,
                if_none_match=if_match is None,
                if_match=if_match,
            )

        try:
            return self._call(uri, put, "conditional write")
        except (PreconditionFailed, ObjectNotFound) as exc:
            # Refused; or our own earlier attempt succeeded and its answer was lost, in which
            # case the object holds exactly our bytes. (If-Match on a gone object is a 404.)
            current = self.read_versioned(uri)
            if current is not None and current.data == data:
                return current.etag
            raise PreconditionFailed(
                f"precondition failed on {uri} (conditional write)", uri
            ) from exc

    @contextlib.contextmanager
    def open_write(
        self, uri: str, content_type: str = "application/octet-stream"
    ) -> Iterator[BinaryIO]:
        target = _s3(uri)
        sink = MultipartSink(self.api, target.bucket, target.key, uri, self.backoff(), content_type)
        writer = io.BufferedWriter(sink, buffer_size=_WRITE_BUFFER)
        try:
            yield writer
            if not writer.closed:
                writer.flush()
            self._call(uri, sink.finish, "write")
        except BaseException:
            sink.abort()
            raise
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def upload_file(self, path: str | Path, uri: str) -> None:
        source = Path(path)
        if not source.is_file():
            raise ObjectNotFound(f"local file {source} to upload to {uri} does not exist", uri)
        target = _s3(uri)
        self._call(uri, lambda: self.api.upload_file(source, target.bucket, target.key), "upload")

    def download_file(self, uri: str, path: str | Path) -> None:
        target = _s3(uri)
        destination = Path(path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        self._call(
            uri,
            lambda: self.api.download_file(target.bucket, target.key, destination),
            "download",
        )

    def delete(self, uri: str) -> None:
        target = _s3(uri)
        self._call(uri, lambda: self.api.delete_object(target.bucket, target.key), "delete")

    def copy(self, src_uri: str, dst_uri: str) -> None:
        source = _s3(src_uri)
        destination = parse_uri(dst_uri)
        if destination.scheme == "s3":
            self._call(
                src_uri,
                lambda: self.api.copy_object(
                    source.bucket, source.key, destination.bucket, destination.key
                ),
                f"copy to {dst_uri}",
            )
        else:
            self.download_file(src_uri, destination.path)

    # Helpers -------------------------------------------------------------------------------

    def _call(self, uri: str, fn: Callable[[], T], action: str = "read") -> T:
        """Retry fn; on failure tell a missing bucket from a missing key (HEAD cannot)."""
        try:
            return self.backoff().call(fn, uri, action)
        except (BucketNotFound, AccessDenied, PreconditionFailed):
            raise
        except StorageError as exc:
            cause = exc.__cause__
            if cause is not None and is_transient(cause):
                # The endpoint is unwell, not the bucket gone; do not add another round of
                # retries to find out.
                raise
            bucket = parse_uri(uri).bucket
            if self._bucket_missing(bucket):
                raise BucketNotFound(
                    f"bucket {bucket!r} of {uri} does not exist ({action})", uri
                ) from exc
            raise

    def _bucket_missing(self, bucket: str) -> bool:
        try:
            self.backoff().call(lambda: self.api.head_bucket(bucket), f"s3://{bucket}", "head")
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, botocore.exceptions.ClientError):
                code, status = client_error_code(cause)
                return status == 404 or code in {"NoSuchBucket", "404", "NotFound"}
            return False
        return False


def _s3(uri: str) -> ParsedUri:
    parsed = parse_uri(uri)
    if parsed.scheme != "s3":
        raise StorageError(f"{uri} is not an s3:// URI", uri)
    return parsed


def _info(uri: str, result: HeadResult) -> ObjectInfo:
    return ObjectInfo(
        uri=uri, size=result.size, etag=result.etag, last_modified=result.last_modified
    )
