"""A streaming S3 reader that survives a broken body: it resumes with a Range request.

The resumed request carries If-Match with the first response's ETag, so a read never mixes two
versions of an object: if the object changed meanwhile, the read fails instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

from llmbatch.storage.errors import StorageError
from llmbatch.storage.retry import Backoff, is_transient, map_error
from llmbatch.storage.s3client import S3Api, StreamingBody

log = logging.getLogger(__name__)
_READALL_BLOCK = 1024 * 1024


class ResumableReader(io.RawIOBase):
    def __init__(
        self,
        api: S3Api,
        bucket: str,
        key: str,
        uri: str,
        backoff: Backoff,
        request_backoff: Backoff | None = None,
    ) -> None:
        """`backoff` paces resumes after a broken stream; `request_backoff` each GET."""
        super().__init__()
        self._api = api
        self._bucket = bucket
        self._key = key
        self._uri = uri
        self._backoff = backoff
        self._request_backoff = request_backoff or backoff
        # Opened eagerly: a missing object or bucket fails here, not at the first read.
        first = self._request_backoff.call(lambda: api.get_object(bucket, key), uri, "read")
        self._body: StreamingBody | None = first.body
        self._etag = first.etag
        self._total = first.total
        self._position = 0
        self.resumes = 0

    @property
    def size(self) -> int:
        return self._total

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._position >= self._total or len(view) == 0:
            self._close_body()
            return 0
        failures = 0
        while True:
            try:
                if self._body is None:
                    self._reopen()
                assert self._body is not None
                data = self._body.read(len(view))
                if not data:
                    # The server ended the body early without an error; same as a reset.
                    raise ConnectionError(f"stream ended at byte {self._position} of {self._total}")
            except StorageError:
                raise
            except Exception as exc:
                failures += 1
                if not is_transient(exc) or failures >= self._backoff.attempts:
                    raise map_error(exc, self._uri, "read") from exc
                log.warning(
                    "read of %s broke at byte %d (%s); resuming",
                    self._uri,
                    self._position,
                    type(exc).__name__,
                )
                self._close_body()
                self._backoff.pause(failures - 1)
                continue
            count = len(data)
            view[:count] = data
            self._position += count
            return count

    def readall(self) -> bytes:
        # The size is known: fill one buffer instead of RawIOBase's 8 KiB appends.
        result = bytearray(self._total - self._position)
        view = memoryview(result)
        filled = 0
        while filled < len(result):
            count = self.readinto(view[filled : filled + _READALL_BLOCK])
            if count == 0:
                break
            filled += count
        del view
        return bytes(result[:filled])

    def _reopen(self) -> None:
        start = self._position
        result = self._request_backoff.call(
            lambda: self._api.get_object(self._bucket, self._key, start, if_match=self._etag),
            self._uri,
            "read",
        )
        self._body = result.body
        self.resumes += 1

    def _close_body(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None

    def close(self) -> None:
        self._close_body()
        super().close()
