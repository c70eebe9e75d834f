"""RFC 3339 times as Kubernetes writes them, and the lenient reader every part shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from llmbatch.api.timefmt import format_time, parse_time, rfc3339, seconds_since


def test_times_are_written_in_utc_whole_seconds_with_z() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1.9) == "1970-01-01T00:00:01Z"
    moment = datetime(2026, 1, 2, 5, 4, 5, 999, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("not a time", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: str | datetime | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_seconds_since() -> None:
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert seconds_since("2026-01-01T00:00:00Z", now) == 60
    assert seconds_since(None, now) is None
