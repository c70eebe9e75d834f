"""get_store: the backend for an URI, cached per settings (boto3 clients are costly to build)."""

from __future__ import annotations

import functools
import threading

from llmbatch.storage.base import ObjectStore
from llmbatch.storage.local import LocalStore
from llmbatch.storage.settings import StorageSettings
from llmbatch.storage.uri import parse_uri

_lock = threading.Lock()


def get_store(uri: str, settings: StorageSettings | None = None) -> ObjectStore:
    """The store for `uri`'s scheme. S3 settings default to the standard AWS env variables."""
    parsed = parse_uri(uri)
    if parsed.scheme == "file":
        return _local_store()
    with _lock:
        return _s3_store(settings if settings is not None else StorageSettings.from_env())


@functools.cache
def _local_store() -> LocalStore:
    return LocalStore()


@functools.lru_cache(maxsize=16)
def _s3_store(settings: StorageSettings) -> ObjectStore:
    from llmbatch.storage.s3 import S3Store

    return S3Store(settings)


def copy_object(src_uri: str, dst_uri: str, settings: StorageSettings | None = None) -> None:
    """Copy between any two URIs (S3 to S3 server-side; across backends streamed)."""
    source = parse_uri(src_uri)
    destination = parse_uri(dst_uri)
    if source.scheme == "file" and destination.scheme == "s3":
        get_store(dst_uri, settings).upload_file(source.path, dst_uri)
        return
    get_store(src_uri, settings).copy(src_uri, dst_uri)
