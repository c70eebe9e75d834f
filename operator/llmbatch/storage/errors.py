"""Storage errors. Each message names the URI, so a log line alone says what failed where."""

from __future__ import annotations


class StorageError(Exception):
    """Any storage failure that retries could not fix (or that retrying cannot fix)."""

    def __init__(self, message: str, uri: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri


class ObjectNotFound(StorageError):
    """The object (S3 key or local file) does not exist."""


class BucketNotFound(StorageError):
    """The S3 bucket does not exist (a configuration error, never transient)."""


class AccessDenied(StorageError):
    """The credentials may not perform the operation (S3 403, or a local permission error)."""


class PreconditionFailed(StorageError):
    """A conditional request was refused: the object changed while it was being read (a
    resumed read would mix two versions), or a create-if-absent / write-if-match found the
    object present / changed."""


class ConditionalWritesUnsupported(StorageError):
    """The store accepted a write it should have refused (If-None-Match or If-Match ignored):
    leases built on it would let two shards work one chunk."""
