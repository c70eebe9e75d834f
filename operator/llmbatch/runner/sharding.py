"""Which shard owns an input line.

Lines go to shards by a stable hash of their custom_id, so every copy of a custom_id meets in
the same shard, where the validator sees the first copy run and flags the later ones as
duplicates. A line without a readable custom_id (bad JSON, no custom_id) goes by its line
number: it only needs *some* shard to report it, and exactly one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


def shard_of_custom_id(custom_id: str, shard_count: int) -> int:
    # blake2b, not hash(): Python's str hash is salted per process, and every pod must agree.
    digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count


@dataclass(frozen=True)
class RoutedLine:
    """A non-blank input line with its owner shard and, when it parsed, its JSON value."""

    lineno: int
    shard: int
    raw: bytes
    data: Any  # the parsed JSON, or None when it did not parse
    parsed: bool


def route_line(lineno: int, raw: bytes, shard_count: int) -> RoutedLine | None:
    """None for a blank line (skipped by every shard, as OpenAI does)."""
    stripped = raw.strip()
    if not stripped:
        return None
    try:
        # Strict UTF-8 first, as FileValidator.check does: json.loads(bytes) would also take a
        # BOM, UTF-16/32 and encoded surrogates, and the runner would run lines the validator
        # and the gateway reject. A line that fails here goes to the validator's error path.
        data = json.loads(stripped.decode("utf-8"))
    except (ValueError, RecursionError):  # bad JSON or bad UTF-8 (UnicodeDecodeError)
        return RoutedLine(lineno, (lineno - 1) % shard_count, raw, None, False)
    custom_id = data.get("custom_id") if isinstance(data, dict) else None
    if isinstance(custom_id, str) and custom_id:
        shard = shard_of_custom_id(custom_id, shard_count)
    else:
        shard = (lineno - 1) % shard_count
    return RoutedLine(lineno, shard, raw, data, True)
