"""Is the store honest about conditional writes? Checked once before anything relies on them.

S3, MinIO and the sandbox's moto refuse a create-if-absent on a present object and a
write-if-match with a stale ETag (412). Some S3-compatible servers ignore both headers and
answer 200: leases on such a store would let two shards work one chunk, so a shard refuses to
start on it rather than run lines twice.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable

from llmbatch.storage.base import ObjectStore
from llmbatch.storage.errors import ConditionalWritesUnsupported, PreconditionFailed


def check_conditional_writes(store: ObjectStore, probe_uri: str) -> None:
    """Create a fresh probe object, then try to create it again and to replace it with a
    wrong ETag: both must be refused. Raises ConditionalWritesUnsupported naming the URI."""
    token = secrets.token_hex(8)
    etag = store.put_if_absent(probe_uri, f"probe {token} first".encode())
    try:
        _expect_refusal(
            probe_uri,
            "If-None-Match",
            lambda: store.put_if_absent(probe_uri, f"probe {token} second".encode()),
        )
        _expect_refusal(
            probe_uri,
            "If-Match",
            lambda: store.put_if_match(probe_uri, f"probe {token} third".encode(), "0" + etag),
        )
    finally:
        with contextlib.suppress(Exception):
            store.delete(probe_uri)


def _expect_refusal(uri: str, header: str, write: Callable[[], str]) -> None:
    try:
        write()
    except PreconditionFailed:
        return
    raise ConditionalWritesUnsupported(
        f"the object store under {uri} ignores {header}: it accepted a conditional write it "
        "had to refuse, so chunk leases cannot keep two shards off one chunk; use S3, MinIO "
        "or another store that honours conditional writes",
        uri,
    )
