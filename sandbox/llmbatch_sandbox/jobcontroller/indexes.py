"""The compressed index-range strings of Indexed Jobs (``status.completedIndexes``,
``status.failedIndexes``): sorted, comma-separated, consecutive runs folded into ``a-b``."""

from __future__ import annotations

from collections.abc import Iterable


def format_indexes(indexes: Iterable[int]) -> str:
    """``{0, 1, 2, 5, 7, 8}`` -> ``"0-2,5,7-8"`` (the form Kubernetes writes)."""
    ordered = sorted(set(indexes))
    runs: list[str] = []
    start = prev = -2
    for index in ordered:
        if index == prev + 1:
            prev = index
            continue
        if start >= 0:
            runs.append(_run(start, prev))
        start = prev = index
    if start >= 0:
        runs.append(_run(start, prev))
    return ",".join(runs)


def _run(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}-{end}"


def parse_indexes(text: str | None, limit: int | None = None) -> set[int]:
    """The inverse of :func:`format_indexes`. Malformed parts and indexes at or above ``limit``
    are dropped, as the Job controller does when it reads back its own status."""
    result: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if last else low
        except ValueError:
            continue
        if low < 0 or high < low:
            continue
        if limit is not None:
            high = min(high, limit - 1)
        result.update(range(low, high + 1))
    return result
