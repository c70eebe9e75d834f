"""Throttling: an API server (or its priority-and-fairness layer) that answers 429, or a 5xx
with a Retry-After header, is asking for that exact pause. Every call waits that long (capped)
and tries again, a few times, as client-go does, instead of failing at once and falling into
the caller's own backoff."""

from __future__ import annotations

# A Retry-After longer than this is clipped: the operator's reconcile loop has its own timers
# (deadline, progress) and a gateway request its client's patience; neither may wait behind a
# single call for long.
MAX_RETRY_AFTER = 10.0
RETRY_AFTER_ATTEMPTS = 5


def parse_retry_after(status: int, value: str | None) -> float | None:
    """The pause a response asks for, or None when it asks for none (or is not retryable).

    Only 429 and 5xx count, as in client-go: a 4xx other than 429 will fail the same way
    again. A 429 without the header still means "slow down": one second. The HTTP-date form
    of the header is not used by the Kubernetes API server and is treated as one second.
    """
    if status != 429 and not (500 <= status <= 599 and value):
        return None
    try:
        seconds = float(value) if value else 1.0
    except ValueError:
        seconds = 1.0
    if seconds != seconds or seconds < 0:  # NaN or negative
        seconds = 1.0
    return min(seconds, MAX_RETRY_AFTER)
