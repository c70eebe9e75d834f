"""Streaming writes to S3: a multipart upload fed part by part, completed on a clean close.

Small objects (under one part) are sent with a single PUT instead. Part uploads run in a small
pool, so the caller fills the next part while the last one travels; memory stays at about
(write_concurrency + 1) * part_size.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import logging
from typing import Any

import botocore.exceptions

from llmbatch.storage.errors import StorageError
from llmbatch.storage.retry import Backoff, client_error_code
from llmbatch.storage.s3client import PartResult, S3Api

log = logging.getLogger(__name__)


def multipart_etag(parts: list[PartResult]) -> str:
    """The ETag S3 gives a completed multipart object: md5 of the parts' md5s, dash, count."""
    digest = hashlib.md5(usedforsecurity=False)
    for part in parts:
        digest.update(bytes.fromhex(part.etag.strip('"')))
    return f"{digest.hexdigest()}-{len(parts)}"


class MultipartSink(io.RawIOBase):
    def __init__(
        self,
        api: S3Api,
        bucket: str,
        key: str,
        uri: str,
        backoff: Backoff,
        content_type: str,
    ) -> None:
        super().__init__()
        self._api = api
        self._bucket = bucket
        self._key = key
        self._uri = uri
        self._backoff = backoff
        self._content_type = content_type
        self._part_size = api.settings.part_size
        self._concurrency = max(1, api.settings.write_concurrency)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures: list[concurrent.futures.Future[PartResult]] = []
        self.finished = False
        self.aborted = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.aborted or self.finished:
            raise ValueError(f"write to {self._uri} after its upload ended")
        self._raise_part_failure()
        view = memoryview(data).cast("B")
        self._buffer += view
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._submit(part)
        return len(view)

    def finish(self) -> None:
        """Make the object appear: one PUT if it fit in a part, else complete the upload."""
        if self._upload_id is None:
            data = bytes(self._buffer)
            self._backoff.call(
                lambda: self._api.put_object(self._bucket, self._key, data, self._content_type),
                self._uri,
                "write",
            )
        else:
            if self._buffer:
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            parts = [future.result() for future in self._futures]
            self._complete(self._upload_id, parts)
        self.finished = True
        self._shutdown()

    def abort(self) -> None:
        """Drop the upload so no partial object (and no stored parts) remain."""
        self.aborted = True
        for future in self._futures:
            future.cancel()
        self._shutdown()
        upload_id = self._upload_id
        if upload_id is not None and not self.finished:
            try:
                self._backoff.call(
                    lambda: self._api.abort_multipart_upload(self._bucket, self._key, upload_id),
                    self._uri,
                    "abort upload",
                )
            except StorageError as exc:
                # S3 lifecycle rules clean up what we cannot; the object never appeared.
                log.warning("could not abort multipart upload of %s: %s", self._uri, exc)

    def _submit(self, data: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._backoff.call(
                lambda: self._api.create_multipart_upload(
                    self._bucket, self._key, self._content_type
                ),
                self._uri,
                "start upload",
            )
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._concurrency, thread_name_prefix="s3-part"
            )
        assert self._pool is not None
        # Bound memory: wait for a slot before queueing another part.
        in_flight = [future for future in self._futures if not future.done()]
        if len(in_flight) >= self._concurrency:
            concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
        self._raise_part_failure()
        number = len(self._futures) + 1
        upload_id = self._upload_id
        self._futures.append(
            self._pool.submit(
                self._backoff.call,
                lambda: self._api.upload_part(self._bucket, self._key, upload_id, number, data),
                self._uri,
                f"upload part {number}",
            )
        )

    def _complete(self, upload_id: str, parts: list[PartResult]) -> None:
        def attempt() -> None:
            try:
                self._api.complete_multipart_upload(self._bucket, self._key, upload_id, parts)
            except botocore.exceptions.ClientError as exc:
                # A retry after a lost answer finds the upload gone: it was completed if the
                # object now carries exactly our parts' ETag.
                code, _ = client_error_code(exc)
                if code != "NoSuchUpload" or not self._completed_already(parts):
                    raise

        self._backoff.call(attempt, self._uri, "complete upload")

    def _completed_already(self, parts: list[PartResult]) -> bool:
        try:
            head = self._api.head_object(self._bucket, self._key)
        except botocore.exceptions.ClientError:
            return False
        return head.etag == multipart_etag(parts)

    def _raise_part_failure(self) -> None:
        for future in self._futures:
            if future.done() and not future.cancelled():
                error = future.exception()
                if error is not None:
                    raise error

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        # Closing the file object does not decide the object's fate; open_write does.
        with contextlib.suppress(Exception):
            super().close()
