"""Durations written the way Kubernetes users write them: ``24h``, ``90m``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

# Also used verbatim as the CRD pattern, so the API server rejects what we cannot parse.
DURATION_PATTERN = r"^([0-9]+(d|h|m|s))+$"

_PART = re.compile(r"([0-9]+)(d|h|m|s)")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """Parse ``1d``, ``24h``, ``1h30m``, ``45s``; raise ValueError with the accepted form."""
    if not re.fullmatch(DURATION_PATTERN, text or ""):
        raise ValueError(
            f"invalid duration {text!r}: use a number followed by d, h, m or s, e.g. 24h or 1h30m"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest ``1h30m``-style form of a positive duration."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"
