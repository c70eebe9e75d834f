"""The ObjectStore interface shared by the S3 and local backends, and what both can share."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from llmbatch.storage.errors import ObjectNotFound, StorageError
from llmbatch.storage.lines import iter_lines

DEFAULT_CHUNK = 256 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    # Opaque; changes when the object changes (S3 ETag without quotes, local mtime+size).
    etag: str | None
    last_modified: datetime | None


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the ETag they were read with (for a later write-if-match)."""

    data: bytes
    etag: str


class ObjectStore(abc.ABC):
    """URI-addressed object I/O. Every method takes full URIs (s3://, file:// or plain paths)."""

    read_chunk_size: int = DEFAULT_CHUNK

    # Reading -------------------------------------------------------------------------------

    @abc.abstractmethod
    def open_read(self, uri: str) -> BinaryIO:
        """A streaming reader. Raises ObjectNotFound / BucketNotFound at once, not on read."""

    def read_lines(self, uri: str) -> Iterator[bytes]:
        """Each line without its b"\\n", streamed in fixed-size blocks (memory ~ block + line).

        A final line without a newline is yielded too; an empty object yields nothing. A b"\\r"
        before the newline is kept: the caller sees the raw bytes.
        """
        reader = self.open_read(uri)
        return _closing_lines(reader, self.read_chunk_size)

    def read_bytes(self, uri: str) -> bytes:
        with self.open_read(uri) as reader:
            return reader.read()

    @abc.abstractmethod
    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end of the object): one ranged
        GET, so a shard reads its chunks' bytes and nothing else of the input."""

    @abc.abstractmethod
    def read_versioned(self, uri: str) -> Versioned | None:
        """The object and its ETag from one read (None if absent): the ETag to pass to
        put_if_match. Local files use a content hash, so it is not head()'s etag."""

    @abc.abstractmethod
    def head(self, uri: str) -> ObjectInfo | None:
        """Metadata, or None if the object does not exist (a missing bucket still raises)."""

    def exists(self, uri: str) -> bool:
        return self.head(uri) is not None

    @abc.abstractmethod
    def list(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        """Every object whose URI starts with prefix_uri (recursive), in key order."""

    # Writing -------------------------------------------------------------------------------

    @abc.abstractmethod
    def write_bytes(
        self, uri: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        """Atomic: readers see the old object or the whole new one, never a part."""

    @abc.abstractmethod
    def write_bytes_if_absent(
        self, uri: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> bool:
        """Create the object only if nothing is there yet.

        True: the object now holds `data` (written by this call, or an earlier attempt of it
        whose answer was lost and is recognised by identical content). False: a different object
        was already there and is left untouched.
        """

    @abc.abstractmethod
    def put_if_absent(
        self, uri: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        """Create the object only if absent (If-None-Match: *); return its new ETag.

        Raises PreconditionFailed when an object is there, unless it holds exactly ``data``
        (a retried request whose first attempt succeeded and whose answer was lost): callers
        whose documents name their writer (leases do) can tell their own write from another's.
        """

    @abc.abstractmethod
    def put_if_match(
        self, uri: str, data: bytes, etag: str, content_type: str = "application/octet-stream"
    ) -> str:
        """Replace the object only if it still has ``etag`` (If-Match); return the new ETag.

        Raises PreconditionFailed when it changed or is gone (same lost-answer rule as
        put_if_absent)."""

    @abc.abstractmethod
    def open_write(
        self, uri: str, content_type: str = "application/octet-stream"
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        """A streaming writer; the object appears on a clean exit only (abort on exception)."""

    @abc.abstractmethod
    def upload_file(self, path: str | Path, uri: str) -> None: ...

    @abc.abstractmethod
    def download_file(self, uri: str, path: str | Path) -> None:
        """Atomic on the local side: the file appears complete or not at all."""

    @abc.abstractmethod
    def delete(self, uri: str) -> None:
        """Remove the object; deleting a missing object is not an error."""

    @abc.abstractmethod
    def copy(self, src_uri: str, dst_uri: str) -> None:
        """Copy an object; dst may be in another backend (then it is streamed)."""

    def download_prefix(self, prefix_uri: str, local_dir: str | Path) -> Path:
        """Download every object under prefix_uri into local_dir, keeping relative paths."""
        target = Path(local_dir)
        target.mkdir(parents=True, exist_ok=True)
        base = prefix_uri if prefix_uri.endswith("/") else prefix_uri + "/"
        found = False
        for info in self.list(base):
            found = True
            relative = safe_relative(info.uri[len(base) :], info.uri)
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            self.download_file(info.uri, destination)
        if not found:
            # A missing model directory is a configuration error; say so instead of loading
            # an empty folder later.
            raise ObjectNotFound(f"no objects under {prefix_uri}", prefix_uri)
        return target


def safe_relative(relative: str, uri: str) -> PurePosixPath:
    """Refuse keys that would escape the target directory (absolute or with '..')."""
    path = PurePosixPath(relative)
    if not relative or path.is_absolute() or ".." in path.parts:
        raise StorageError(f"refusing to download {uri}: unsafe relative path {relative!r}", uri)
    return path


def _closing_lines(reader: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with reader:
        yield from iter_lines(reader, chunk_size)
