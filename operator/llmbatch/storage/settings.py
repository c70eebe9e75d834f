"""Connection and tuning settings for the stores."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

MiB = 1024 * 1024
# S3 rejects multipart parts under 5 MiB (except the last one).
MIN_PART_SIZE = 5 * MiB


@dataclass(frozen=True)
class StorageSettings:
    """Where S3 is and how to talk to it. Hashable, so stores can be cached per settings.

    The first four fields are the public contract; the rest tune retries and transfers and have
    defaults that suit both AWS and MinIO.
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    # Never shown in reprs or logs.
    secret_access_key: str | None = field(default=None, repr=False)
    # botocore's own retries (per request): "standard" or "adaptive" (client-side rate limiting).
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    max_attempts: int = 8
    # Our retries, exponential backoff with full jitter. A stream cut mid-body (which botocore
    # cannot retry) is resumed up to stream_attempts times in a row without progress; a whole
    # request whose botocore attempts all failed is tried request_attempts times.
    stream_attempts: int = 10
    request_attempts: int = 3
    backoff_base: float = 0.1
    backoff_cap: float = 8.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # Multipart part size for open_write, upload_file and download_file (>= 5 MiB on real S3;
    # tests lower it against moto, which does not enforce the minimum).
    part_size: int = 8 * MiB
    # Parallel parts in flight for upload_file/download_file/copy.
    max_concurrency: int = 4
    # Parts in flight per open_write stream (memory ~ (this + 1) * part_size per stream).
    write_concurrency: int = 2
    # Block size of streaming reads; a line longer than this still works (it is assembled).
    read_chunk_size: int = 256 * 1024
    # Keys per ListObjectsV2 page (S3's maximum is 1000).
    list_page_size: int = 1000
    # Used when endpoint_url is set (MinIO, moto): path-style addressing needs no DNS per bucket.
    addressing_style: Literal["auto", "path", "virtual"] | None = None

    @property
    def effective_region(self) -> str:
        return self.region or "us-east-1"

    @property
    def effective_addressing_style(self) -> Literal["auto", "path", "virtual"]:
        if self.addressing_style is not None:
            return self.addressing_style
        return "path" if self.endpoint_url else "auto"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageSettings:
        """Read the standard AWS variables (AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL)."""
        source = os.environ if env is None else env

        def get(*names: str) -> str | None:
            for name in names:
                value = source.get(name)
                if value:
                    return value
            return None

        return cls(
            endpoint_url=get("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            region=get("AWS_REGION", "AWS_DEFAULT_REGION"),
            access_key_id=get("AWS_ACCESS_KEY_ID"),
            secret_access_key=get("AWS_SECRET_ACCESS_KEY"),
        )
