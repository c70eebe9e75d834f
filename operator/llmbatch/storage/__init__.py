"""URI-addressed object I/O (s3://, file:// and plain paths): streaming, multipart, retries.

store = get_store("s3://bucket/in.jsonl", StorageSettings.from_env())
for line in store.read_lines("s3://bucket/in.jsonl"): ...
"""

from llmbatch.storage.base import ObjectInfo, ObjectStore, Versioned
from llmbatch.storage.conditional import check_conditional_writes
from llmbatch.storage.errors import (
    AccessDenied,
    BucketNotFound,
    ConditionalWritesUnsupported,
    ObjectNotFound,
    PreconditionFailed,
    StorageError,
)
from llmbatch.storage.factory import copy_object, get_store
from llmbatch.storage.settings import StorageSettings
from llmbatch.storage.uri import join_uri, parse_uri

__all__ = [
    "AccessDenied",
    "BucketNotFound",
    "ConditionalWritesUnsupported",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PreconditionFailed",
    "StorageError",
    "StorageSettings",
    "Versioned",
    "check_conditional_writes",
    "copy_object",
    "get_store",
    "join_uri",
    "parse_uri",
]
