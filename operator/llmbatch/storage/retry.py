"""Our retry layer on top of botocore's: exponential backoff with full jitter.

botocore already retries each request (throttling, 5xx, connection errors). This layer covers
what it cannot: a response stream cut mid-body (the reader resumes with a Range request), a
request whose botocore attempts were all used up during a burst of faults, or a retry quota
that ran dry.
"""

from __future__ import annotations

import http.client
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import boto3.exceptions
import botocore.exceptions
import urllib3.exceptions

from llmbatch.storage.errors import (
    AccessDenied,
    BucketNotFound,
    ObjectNotFound,
    PreconditionFailed,
    StorageError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# S3 error codes that say "try again later" (AWS, MinIO and moto spellings).
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "XMinioServerNotInitialized",
        "OperationAborted",
        # Two conditional writes raced; the retry gets a clean 412 or 200.
        "ConditionalRequestConflict",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)

# Failures of the connection or of the body stream, under any of the names the layers use.
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    botocore.exceptions.ConnectionError,  # endpoint, closed, read/connect timeouts, proxy
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    urllib3.exceptions.HTTPError,  # ProtocolError, ReadTimeoutError raised by raw streams
    http.client.HTTPException,
    ConnectionError,  # ConnectionResetError, BrokenPipeError
    TimeoutError,
)


def client_error_code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    return str(error.get("Code", "")), int(meta.get("HTTPStatusCode", 0) or 0)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, boto3.exceptions.S3UploadFailedError):
        # s3transfer wraps the failure of a part; judge by what it wraps.
        inner = exc.__cause__ or exc.__context__
        return inner is not None and is_transient(inner)
    if isinstance(exc, botocore.exceptions.ClientError):
        code, status = client_error_code(exc)
        return code in _TRANSIENT_CODES or status >= 500 or status == 429
    return isinstance(exc, TRANSIENT_EXCEPTIONS)


def map_error(exc: BaseException, uri: str, action: str) -> StorageError:
    """A storage error naming the URI for any exception from botocore/s3transfer."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        code, status = client_error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or code
        if code == "NoSuchBucket":
            return BucketNotFound(f"bucket of {uri} does not exist ({action})", uri)
        if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchUpload"):
            return ObjectNotFound(f"object {uri} not found ({action})", uri)
        if code in _DENIED_CODES or status == 403:
            return AccessDenied(f"access denied to {uri} ({action}): {message}", uri)
        if code == "PreconditionFailed" or status == 412:
            return PreconditionFailed(f"precondition failed on {uri} ({action})", uri)
        return StorageError(f"S3 error {code or status} on {uri} ({action}): {message}", uri)
    if isinstance(exc, boto3.exceptions.S3UploadFailedError):
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, botocore.exceptions.ClientError):
            return map_error(inner, uri, action)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return AccessDenied(f"no S3 credentials to access {uri} ({action})", uri)
    return StorageError(f"{action} {uri} failed: {type(exc).__name__}: {exc}", uri)


class Backoff:
    """Exponential backoff with full jitter: sleep U(0, min(cap, base * 2**attempt))."""

    def __init__(
        self,
        attempts: int,
        base: float,
        cap: float,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.attempts = max(1, attempts)
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()
        self._sleep = sleep

    def delay(self, attempt: int) -> float:
        return self._rng.uniform(0.0, min(self.cap, self.base * (2**attempt)))

    def pause(self, attempt: int) -> None:
        self._sleep(self.delay(attempt))

    def call(self, fn: Callable[[], T], uri: str, action: str) -> T:
        """Run fn, retrying transient failures; anything else becomes a StorageError."""
        attempt = 0
        while True:
            try:
                return fn()
            except StorageError:
                raise
            except Exception as exc:
                attempt += 1
                if not is_transient(exc) or attempt >= self.attempts:
                    raise map_error(exc, uri, action) from exc
                log.warning(
                    "retrying %s %s after %s (attempt %d/%d)",
                    action,
                    uri,
                    type(exc).__name__,
                    attempt,
                    self.attempts,
                )
                self.pause(attempt - 1)
