"""Uploaded files in object storage, one folder per file under the tenant's prefix:

    <prefix>/tenants/<tenant>/files/<file id>/content     the bytes as uploaded
    <prefix>/tenants/<tenant>/files/<file id>/meta.json   the File object and what validation found
    <prefix>/expiry/<expires_at, 11 digits>/<tenant>/<file id>   empty: the expiry index

``meta.json`` is written after the content, and a file exists only when it does: a crashed
upload leaves no visible file. A file that expires has its index marker written before its
``meta.json``, so the sweeper, listing markers in key (= time) order, finds every one of them.
The tenant is part of every key, so one tenant cannot name another's file. All methods are
blocking (boto3); the routes call them in a worker thread.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from llmbatch.api.lines import FileValidator, Limits, LineError, ValidLine
from llmbatch.gateway.config import StorageConfig
from llmbatch.storage import ObjectStore

META = "meta.json"
CONTENT = "content"
# Distinct body.model values remembered per file (a batch file should have exactly one).
_MAX_MODELS = 8


@dataclass
class FileMeta:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    # What validation of a batch input found.
    endpoint: str | None = None
    models: list[str] = field(default_factory=list)
    requests: int = 0
    expires_at: int | None = None

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.expires_at,
            "status_details": None,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FileMeta:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


class UploadAborted(Exception):
    """Raised into the storage writer so the partial object is discarded."""


@dataclass
class UploadOutcome:
    size: int
    requests: int
    endpoint: str | None
    models: list[str]
    errors: list[LineError]
    error_count: int
    oversized: bool


class UploadSink:
    """Receives a file's bytes in blocks: validates each line as a batch request and streams the
    bytes to storage. After the first bad line nothing more is written (the upload will be
    refused) but lines keep being checked so the answer can count them all. Past the size limit
    nothing more is looked at. Memory: one block, one partial line, the writer's part buffer and
    the custom_ids seen (for duplicates)."""

    def __init__(self, store: ObjectStore, uri: str, limits: Limits, max_errors: int) -> None:
        self._store = store
        self._uri = uri
        self._limits = limits
        self._validator = FileValidator(limits=limits)
        self._max_errors = max_errors
        self._writer_cm: contextlib.AbstractContextManager[BinaryIO] | None = None
        self._writer: BinaryIO | None = None
        self._pending = bytearray()
        self._skipping = False  # inside a line already reported as too long
        self._lineno = 0
        self.size = 0
        self.requests = 0
        self.models: list[str] = []
        self.errors: list[LineError] = []
        self.error_count = 0
        self.oversized = False

    def open(self) -> None:
        self._writer_cm = self._store.open_write(self._uri)
        self._writer = self._writer_cm.__enter__()

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.oversized:
            return
        if self.size > self._limits.max_bytes:
            self.oversized = True
            return
        if self._writer is not None and self.error_count == 0:
            self._writer.write(data)
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
                self._pending.clear()
            elif self._pending:
                self._pending += data[start:end]
                line = bytes(self._pending)
                self._pending.clear()
                self._line(line)
            else:
                self._line(data[start:end])
            start = end + 1
        if not self._skipping:
            self._pending += data[start:]
            if len(self._pending) > self._limits.max_line_bytes:
                # Report the line now and drop its bytes instead of holding all of it.
                self._line(bytes(self._pending))
                self._pending.clear()
                self._skipping = True

    def _line(self, raw: bytes) -> None:
        self._lineno += 1
        result = self._validator.check(self._lineno, raw)
        if isinstance(result, ValidLine):
            self.requests += 1
            model = result.request.body.get("model")
            if (
                isinstance(model, str)
                and model not in self.models
                and len(self.models) < _MAX_MODELS
            ):
                self.models.append(model)
        elif isinstance(result, LineError):
            self.error_count += 1
            if len(self.errors) < self._max_errors:
                self.errors.append(result)

    def finish(self) -> UploadOutcome:
        """Check the last line; commit the object if everything passed, else discard it."""
        if not self.oversized and not self._skipping and self._pending:
            self._line(bytes(self._pending))
            self._pending.clear()
        ok = not self.oversized and self.error_count == 0 and self.requests > 0
        if ok:
            self._close(None)
        else:
            self.abort()
        endpoint = self._validator.endpoint.value if self._validator.endpoint else None
        return UploadOutcome(
            size=self.size,
            requests=self.requests,
            endpoint=endpoint,
            models=list(self.models),
            errors=list(self.errors),
            error_count=self.error_count,
            oversized=self.oversized,
        )

    def abort(self) -> None:
        exc = UploadAborted(self._uri)
        with contextlib.suppress(UploadAborted):
            self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        cm, self._writer_cm, self._writer = self._writer_cm, None, None
        if cm is None:
            return
        if exc is None:
            cm.__exit__(None, None, None)
        else:
            cm.__exit__(type(exc), exc, exc.__traceback__)


class FileStore:
    def __init__(self, store: ObjectStore, storage: StorageConfig) -> None:
        self.store = store
        self.storage = storage

    def files_prefix(self, tenant: str) -> str:
        return self.storage.uri("tenants", tenant, "files") + "/"

    def content_uri(self, tenant: str, file_id: str) -> str:
        return self.storage.uri("tenants", tenant, "files", file_id, CONTENT)

    def meta_uri(self, tenant: str, file_id: str) -> str:
        return self.storage.uri("tenants", tenant, "files", file_id, META)

    def expiry_prefix(self) -> str:
        return self.storage.uri("expiry") + "/"

    def expiry_marker_uri(self, expires_at: int, tenant: str, file_id: str) -> str:
        # Fixed width, so key order is time order (11 digits last until the year 5138).
        return self.storage.uri("expiry", f"{expires_at:011d}", tenant, file_id)

    def batch_output_prefix(self, tenant: str, batch_id: str) -> str:
        return self.storage.uri("tenants", tenant, "batches", batch_id) + "/"

    def sink(self, tenant: str, file_id: str, limits: Limits, max_errors: int) -> UploadSink:
        return UploadSink(self.store, self.content_uri(tenant, file_id), limits, max_errors)

    def save_meta(self, tenant: str, meta: FileMeta) -> None:
        if meta.expires_at is not None:
            self.store.write_bytes(self.expiry_marker_uri(meta.expires_at, tenant, meta.id), b"")
        self.store.write_bytes(
            self.meta_uri(tenant, meta.id), json.dumps(asdict(meta)).encode(), "application/json"
        )

    def get_meta(self, tenant: str, file_id: str) -> FileMeta | None:
        from llmbatch.storage import ObjectNotFound

        try:
            data = self.store.read_bytes(self.meta_uri(tenant, file_id))
        except ObjectNotFound:
            return None
        return FileMeta.from_dict(json.loads(data))

    def list_ids(self, tenant: str) -> list[str]:
        """Ids of the tenant's files, oldest first (ids sort by creation time)."""
        prefix = self.files_prefix(tenant)
        ids = []
        for info in self.store.list(prefix):
            rest = info.uri[len(prefix) :]
            file_id, _, name = rest.partition("/")
            if name == META:
                ids.append(file_id)
        return sorted(ids)

    def delete(self, tenant: str, file_id: str) -> None:
        # Meta first: once it is gone the file no longer exists, even if the content delete fails.
        self.store.delete(self.meta_uri(tenant, file_id))
        self.store.delete(self.content_uri(tenant, file_id))
