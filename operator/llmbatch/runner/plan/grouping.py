"""Prefix grouping: the order in which a segment's lines reach the engine, so that requests
sharing a long prompt prefix run next to each other and vLLM's prefix cache serves them.

A line's prompt text (the messages' texts in order; a completion's prompt) is hashed at
PREFIX_LEVELS byte lengths. Two lines share a level when their first ``level`` bytes are equal.
The shortest level, 512 bytes (~128 tokens, 8 KV-cache blocks of 16), is long enough that
short unrelated prompts ("Translate: ...") never group, and short enough that a long system
prompt, a few-shot block or a document of several hundred words followed by one of several
questions does. The longer levels split a group further (one long system prompt, then several
documents each asked several questions: grouped by prompt, then by document).

The order: groups by first appearance, each group's subgroups by first appearance, and so on;
within the finest group, input order. Lines without a shared prefix stay in input order. Per
line this keeps one 8-byte hash per level, in arrays (see chunking.SegmentLines).
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from llmbatch.api.tokens import prompt_texts

PREFIX_LEVELS = (512, 2048, 8192, 32768)
# A line whose prompt is shorter than a level has no key there.
NO_KEY = 0


def prefix_keys(body: Mapping[str, Any], endpoint: str | None = None) -> list[int]:
    """One key per PREFIX_LEVELS entry: a hash of the prompt's first ``level`` bytes, or NO_KEY
    when the prompt is shorter. One pass over the text (the hash is extended level by level)."""
    text = "\n".join(prompt_texts(body, endpoint)).encode("utf-8", "surrogatepass")
    keys = [NO_KEY] * len(PREFIX_LEVELS)
    digest = hashlib.blake2b(digest_size=8)
    hashed = 0
    for position, level in enumerate(PREFIX_LEVELS):
        if len(text) < level:
            break
        digest.update(text[hashed:level])
        hashed = level
        key = int.from_bytes(digest.copy().digest(), "big", signed=True)
        keys[position] = key if key != NO_KEY else 1
    return keys


def first_appearances(keys: Sequence[int]) -> array[int]:
    """For each position, the first position with the same key; a position without a key is its
    own first appearance."""
    first: dict[int, int] = {}
    result = array("q", range(len(keys)))
    for position, key in enumerate(keys):
        if key != NO_KEY:
            result[position] = first.setdefault(key, position)
    return result


def grouped_order(levels: Sequence[Sequence[int]], count: int) -> tuple[list[int], array[int]]:
    """(positions 0..count-1 in feeding order, each position's level-1 group: the first
    position sharing its shortest prefix). ``levels`` holds each level's keys by position."""
    order = list(range(count))
    if not levels:
        return order, array("q", order)
    columns = [first_appearances(keys) for keys in levels if any(keys)]
    if not columns:
        return order, array("q", order)
    # Stable sorts from the finest level to the coarsest give the lexicographic order of
    # (group, subgroup, ..., position) without building a tuple per line.
    for column in reversed(columns):
        order.sort(key=column.__getitem__)
    return order, columns[0]


def shared_lines(groups: Sequence[int]) -> int:
    """How many positions share their level-1 group with at least one other."""
    sizes = Counter(groups)
    return sum(size for size in sizes.values() if size > 1)
