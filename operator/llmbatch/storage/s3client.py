"""A thin typed layer over the boto3 S3 client (boto3 itself is untyped).

Only the calls the store makes, with plain Python types in and out, so the rest of the package
stays under mypy --strict.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast

import boto3
import boto3.s3.transfer
import botocore.config

from llmbatch.storage.settings import StorageSettings


class StreamingBody(Protocol):
    def read(self, amt: int | None = None, /) -> bytes: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class HeadResult:
    size: int
    etag: str
    last_modified: datetime | None


@dataclass(frozen=True)
class GetResult:
    body: StreamingBody
    # Bytes in this response (the rest of the object from the range start).
    length: int
    # Size of the whole object.
    total: int
    etag: str


@dataclass(frozen=True)
class PartResult:
    number: int
    etag: str
    # Checksum fields (ChecksumCRC32, ...) the part was uploaded with; CompleteMultipartUpload
    # must repeat them when the upload was created with a checksum algorithm.
    checksums: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"PartNumber": self.number, "ETag": self.etag, **self.checksums}


def _strip_etag(etag: object) -> str:
    return str(etag or "").strip('"')


def build_client(settings: StorageSettings) -> Any:
    config = botocore.config.Config(
        region_name=settings.effective_region,
        retries={"total_max_attempts": settings.max_attempts, "mode": settings.retry_mode},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        s3={"addressing_style": settings.effective_addressing_style},
        # Enough pooled connections for the transfer threads plus streaming readers.
        max_pool_connections=max(10, settings.max_concurrency * 3),
        tcp_keepalive=True,
    )
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        region_name=settings.effective_region,
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)


class S3Api:
    """Typed calls on one boto3 client (thread-safe, shared by every store user)."""

    def __init__(self, settings: StorageSettings, client: Any | None = None) -> None:
        self.settings = settings
        self._client = client if client is not None else build_client(settings)
        self._transfer = boto3.s3.transfer.TransferConfig(
            multipart_threshold=settings.part_size,
            multipart_chunksize=settings.part_size,
            max_concurrency=settings.max_concurrency,
            use_threads=settings.max_concurrency > 1,
            # s3transfer re-reads a download chunk whose stream broke, this many times.
            num_download_attempts=settings.stream_attempts,
        )

    def head_object(self, bucket: str, key: str) -> HeadResult:
        response = self._client.head_object(Bucket=bucket, Key=key)
        return HeadResult(
            size=int(response["ContentLength"]),
            etag=_strip_etag(response.get("ETag")),
            last_modified=cast("datetime | None", response.get("LastModified")),
        )

    def head_bucket(self, bucket: str) -> None:
        self._client.head_bucket(Bucket=bucket)

    def get_object(
        self,
        bucket: str,
        key: str,
        start: int = 0,
        if_match: str | None = None,
        length: int | None = None,
    ) -> GetResult:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if length is not None:
            kwargs["Range"] = f"bytes={start}-{start + length - 1}"
        elif start:
            kwargs["Range"] = f"bytes={start}-"
        if if_match:
            kwargs["IfMatch"] = f'"{if_match}"'
        response = self._client.get_object(**kwargs)
        length = int(response["ContentLength"])
        total = length
        content_range = response.get("ContentRange")
        if content_range:
            # "bytes 100-199/200"
            total = int(str(content_range).rsplit("/", 1)[1])
        return GetResult(
            body=cast(StreamingBody, response["Body"]),
            length=length,
            total=total,
            etag=_strip_etag(response.get("ETag")),
        )

    def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Body": data,
            "ContentType": content_type,
        }
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = f'"{if_match}"'
        response = self._client.put_object(**kwargs)
        return _strip_etag(response.get("ETag"))

    def create_multipart_upload(self, bucket: str, key: str, content_type: str) -> str:
        response = self._client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=content_type
        )
        return str(response["UploadId"])

    def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes
    ) -> PartResult:
        response = self._client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        checksums = {
            name: str(value)
            for name, value in response.items()
            if name.startswith("Checksum") and name != "ChecksumType" and value
        }
        return PartResult(number, str(response["ETag"]), checksums)

    def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[PartResult]
    ) -> str:
        response = self._client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [part.as_dict() for part in parts]},
        )
        return _strip_etag(response.get("ETag"))

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    def list_page(
        self, bucket: str, prefix: str, token: str | None
    ) -> tuple[list[tuple[str, HeadResult]], str | None]:
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Prefix": prefix,
            "MaxKeys": self.settings.list_page_size,
        }
        if token:
            kwargs["ContinuationToken"] = token
        response = self._client.list_objects_v2(**kwargs)
        items = [
            (
                str(entry["Key"]),
                HeadResult(
                    size=int(entry["Size"]),
                    etag=_strip_etag(entry.get("ETag")),
                    last_modified=cast("datetime | None", entry.get("LastModified")),
                ),
            )
            for entry in response.get("Contents", [])
        ]
        next_token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
        return items, (str(next_token) if next_token else None)

    def delete_object(self, bucket: str, key: str) -> None:
        self._client.delete_object(Bucket=bucket, Key=key)

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> None:
        # The managed copy switches to multipart copy above the part size (CopyObject stops
        # at 5 GB).
        self._client.copy(
            {"Bucket": src_bucket, "Key": src_key}, dst_bucket, dst_key, Config=self._transfer
        )

    def upload_file(self, path: Path, bucket: str, key: str) -> None:
        self._client.upload_file(str(path), bucket, key, Config=self._transfer)

    def download_file(self, bucket: str, key: str, path: Path) -> None:
        # s3transfer writes to a temporary name and renames it on success.
        self._client.download_file(bucket, key, str(path), Config=self._transfer)

    def iter_list(self, bucket: str, prefix: str) -> Iterator[tuple[str, HeadResult]]:
        token: str | None = None
        while True:
            items, token = self.list_page(bucket, prefix, token)
            yield from items
            if token is None:
                return
