"""The local backend: file:// URIs and plain paths, with atomic writes (temp file + rename)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from llmbatch.storage.base import DEFAULT_CHUNK, ObjectInfo, ObjectStore, Versioned
from llmbatch.storage.errors import AccessDenied, ObjectNotFound, PreconditionFailed, StorageError
from llmbatch.storage.uri import ParsedUri, format_local, parse_uri

# Temp files live next to their target (same filesystem, so os.replace is atomic) and are
# hidden from listings by this marker.
_TMP_MARK = ".llmbatch-tmp-"
# Conditional writes in one directory take this lock (flock: across processes and threads,
# released by the kernel if the holder dies), so a compare and its replace are one step.
_LOCK_NAME = _TMP_MARK + "lock"


class LocalStore(ObjectStore):
    def __init__(self, read_chunk_size: int = DEFAULT_CHUNK) -> None:
        self.read_chunk_size = read_chunk_size

    # Reading -------------------------------------------------------------------------------

    def open_read(self, uri: str) -> BinaryIO:
        path = _path(uri)
        with _mapped(uri):
            if path.is_dir():
                raise StorageError(f"{uri} is a directory, not an object", uri)
            return path.open("rb")

    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        with self.open_read(uri) as reader, _mapped(uri):
            reader.seek(offset)
            return reader.read(length)

    def read_versioned(self, uri: str) -> Versioned | None:
        path = _path(uri)
        with _mapped(uri):
            try:
                data = path.read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                return None
        # Writes are atomic renames, so an unlocked read sees one whole version.
        return Versioned(data, _content_etag(data))

    def head(self, uri: str) -> ObjectInfo | None:
        path = _path(uri)
        with _mapped(uri):
            try:
                stat = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
        if not path.is_file():
            return None
        return _info(uri, stat)

    def list(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        parsed = parse_uri(prefix_uri)
        prefix = parsed.key
        # S3 semantics: a prefix is a string prefix, so "out/par" matches "out/parts/x". Walking
        # from the prefix's own directory string keeps every path starting with the prefix
        # literally, so callers can slice the prefix off.
        root = os.path.dirname(prefix)
        strip_dot = root == ""
        if strip_dot:
            root = "."
        if not os.path.isdir(root):
            return
        found: list[str] = []
        with _mapped(prefix_uri):
            for dirpath, dirnames, filenames in os.walk(root):
                base = dirpath[2:] if strip_dot and dirpath.startswith("./") else dirpath
                if strip_dot and dirpath == ".":
                    base = ""
                # Only descend where a match is possible.
                dirnames[:] = [
                    name for name in dirnames if _may_match(os.path.join(base, name) + "/", prefix)
                ]
                for name in filenames:
                    if name.startswith(_TMP_MARK):
                        continue
                    full = os.path.join(base, name)
                    if full.startswith(prefix):
                        found.append(full)
        for full in sorted(found):
            try:
                stat = os.stat(full)
            except FileNotFoundError:
                continue
            yield _info(format_local(full, parsed.file_style), stat)

    # Writing -------------------------------------------------------------------------------

    def write_bytes(
        self, uri: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        with self.open_write(uri) as handle:
            handle.write(data)

    def write_bytes_if_absent(
        self, uri: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> bool:
        path = _path(uri)
        with _mapped(uri):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _write_temp(path, data)
            try:
                # A hard link fails if the target exists: an atomic create-if-absent that
                # never shows a half-written file.
                os.link(tmp, path)
            except FileExistsError:
                return path.read_bytes() == data
            finally:
                os.unlink(tmp)
        return True

    def put_if_absent(
        self, uri: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        if not self.write_bytes_if_absent(uri, data, content_type):
            raise PreconditionFailed(f"{uri} already exists (create if absent)", uri)
        return _content_etag(data)

    def put_if_match(
        self, uri: str, data: bytes, etag: str, content_type: str = "application/octet-stream"
    ) -> str:
        path = _path(uri)
        with _mapped(uri), _directory_lock(path.parent):
            current = self.read_versioned(uri)
            if current is None or current.etag != etag:
                if current is not None and current.data == data:
                    return current.etag
                raise PreconditionFailed(f"{uri} changed or is gone (write if match)", uri)
            tmp = _write_temp(path, data)
            os.replace(tmp, path)
        return _content_etag(data)

    @contextlib.contextmanager
    def open_write(
        self, uri: str, content_type: str = "application/octet-stream"
    ) -> Iterator[BinaryIO]:
        path = _path(uri)
        with _mapped(uri):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=_TMP_MARK, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                if not handle.closed:
                    # Durable before it becomes visible under its name.
                    handle.flush()
                    os.fsync(handle.fileno())
            with _mapped(uri):
                os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def upload_file(self, path: str | Path, uri: str) -> None:
        source = Path(path)
        if not source.is_file():
            raise ObjectNotFound(f"local file {source} to upload to {uri} does not exist", uri)
        self._copy_file(source, uri)

    def download_file(self, uri: str, path: str | Path) -> None:
        source = _path(uri)
        if not source.is_file():
            raise ObjectNotFound(f"object {uri} not found", uri)
        self._copy_file(source, str(Path(path).absolute()))

    def delete(self, uri: str) -> None:
        with _mapped(uri), contextlib.suppress(FileNotFoundError):
            _path(uri).unlink()

    def copy(self, src_uri: str, dst_uri: str) -> None:
        destination = parse_uri(dst_uri)
        if destination.scheme == "file":
            source = _path(src_uri)
            with _mapped(src_uri):
                if not source.is_file():
                    raise ObjectNotFound(f"object {src_uri} not found", src_uri)
            self._copy_file(source, dst_uri)
            return
        from llmbatch.storage.factory import get_store

        get_store(dst_uri).upload_file(_path(src_uri), dst_uri)

    def _copy_file(self, source: Path, dst_uri: str) -> None:
        with (
            _mapped(dst_uri),
            source.open("rb") as reader,
            self.open_write(dst_uri) as writer,
        ):
            shutil.copyfileobj(reader, writer, self.read_chunk_size)


def _path(uri: str) -> Path:
    parsed: ParsedUri = parse_uri(uri)
    if parsed.scheme != "file":
        raise StorageError(f"{uri} is not a local path", uri)
    return parsed.path


def _info(uri: str, stat: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        uri=uri,
        size=stat.st_size,
        etag=f"{stat.st_mtime_ns:x}-{stat.st_size:x}",
        last_modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
    )


def _content_etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _may_match(directory: str, prefix: str) -> bool:
    return directory.startswith(prefix) or prefix.startswith(directory)


def _write_temp(path: Path, data: bytes) -> str:
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_MARK, dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp_name


@contextlib.contextmanager
def _mapped(uri: str) -> Iterator[None]:
    """Turn OS errors into storage errors that name the URI."""
    try:
        yield
    except FileNotFoundError as exc:
        raise ObjectNotFound(f"object {uri} not found", uri) from exc
    except PermissionError as exc:
        raise AccessDenied(f"access denied to {uri}: {exc.strerror}", uri) from exc
    except IsADirectoryError as exc:
        raise StorageError(f"{uri} is a directory, not an object", uri) from exc
    except NotADirectoryError as exc:
        raise ObjectNotFound(f"object {uri} not found (a parent is a file)", uri) from exc
    except OSError as exc:
        raise StorageError(f"I/O error on {uri}: {exc}", uri) from exc
