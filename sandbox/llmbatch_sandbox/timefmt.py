"""RFC 3339 timestamps as the Kubernetes API writes them (UTC, second precision, ``Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_since(value: str | None) -> float | None:
    parsed = parse_rfc3339(value)
    if parsed is None:
        return None
    return (datetime.now(UTC) - parsed).total_seconds()
