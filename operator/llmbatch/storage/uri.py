"""Parsing and joining of the URIs the project accepts: s3://bucket/key, file:///abs/path, paths.

file:// URIs are taken literally (no percent-decoding), so join_uri on a user's prefix and the
path it names always agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmbatch.storage.errors import StorageError

Scheme = Literal["s3", "file"]
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class ParsedUri:
    scheme: Scheme
    # S3: the bucket; file: empty.
    bucket: str
    # S3: the key (may be empty for a bucket-wide prefix); file: the path as given.
    key: str
    # The style the caller used for local paths, so listings answer in the same style.
    file_style: Literal["uri", "path", ""] = ""

    @property
    def path(self) -> Path:
        return Path(self.key)


def parse_uri(uri: str) -> ParsedUri:
    if not uri:
        raise StorageError("empty storage URI", uri)
    if uri.startswith("s3://"):
        rest = uri[len("s3://") :]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise StorageError(f"S3 URI without a bucket: {uri!r}", uri)
        return ParsedUri("s3", bucket, key)
    if uri.startswith("file://"):
        rest = uri[len("file://") :]
        # file:///abs (empty host) or file://localhost/abs; anything else is a remote host.
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest.startswith("/"):
            raise StorageError(f"file URI must hold an absolute path: {uri!r}", uri)
        return ParsedUri("file", "", rest, "uri")
    other = _SCHEME.match(uri)
    if other:
        raise StorageError(f"unsupported storage scheme {other.group(1)!r} in {uri!r}", uri)
    return ParsedUri("file", "", uri, "path")


def format_local(path: Path | str, style: Literal["uri", "path", ""]) -> str:
    """Render a local path in the style (file:// or plain) the caller used."""
    text = str(path)
    if style == "uri":
        return "file://" + str(Path(text).absolute())
    return text


def join_uri(prefix: str, *parts: str) -> str:
    """Join an URI prefix and relative parts with single slashes.

    join_uri("s3://b/out/", "parts", "p-0.jsonl") == "s3://b/out/parts/p-0.jsonl".
    """
    result = prefix
    for part in parts:
        piece = part.strip("/")
        if not piece:
            continue
        if result.endswith("/") or result.endswith("://"):
            result = result + piece
        elif result == "":
            result = piece
        else:
            result = result + "/" + piece
    return result
