"""RFC 3339 times the way Kubernetes writes them (UTC, whole seconds, ``Z``): one module for
status fields, progress documents, manifests and the gateway's timestamps."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(ts: float | None = None) -> str:
    """A Unix time (now by default) as RFC 3339."""
    return format_time(datetime.fromtimestamp(time.time() if ts is None else ts, UTC))


def now_rfc3339() -> str:
    return rfc3339()


def parse_time(text: str | datetime | None) -> datetime | None:
    """None for a missing or unparseable value: callers treat both as "not known yet".

    A datetime (a client library may hand one over already parsed) is taken as it is; a time
    without a zone is UTC."""
    if isinstance(text, datetime):
        moment = text
    elif not text:
        return None
    else:
        try:
            moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_since(text: str | None, now: datetime | None = None) -> float | None:
    moment = parse_time(text)
    if moment is None:
        return None
    return ((now or datetime.now(UTC)) - moment).total_seconds()
