"""One event's delivery to one endpoint: its state (kept by the sender in the cluster, so a
restart loses nothing), the backoff schedule, and a single signed attempt.

Senders step the state: when ``due``, make one ``attempt`` and store ``after`` its outcome.
An event is retried for about 16 hours (Standard Webhooks' schedule, shortened at the start)
and then given up as ``failed``; a 2xx answer ends it as ``delivered``. Time is a plain number
of Unix seconds handed in by the caller, so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, replace
from typing import Literal

import httpx

from llmbatch.notify.signing import sign_headers
from llmbatch.notify.urls import check_url

# Pause after the n-th failed attempt (the first attempt is immediate): about 16 h in all.
BACKOFF_SECONDS = (5, 30, 120, 300, 900, 1800, 3600, 7200, 14400, 28800)
ATTEMPT_TIMEOUT = 15.0

State = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class Delivery:
    event: str
    type: str
    created_at: int
    attempts: int = 0
    next_at: float = 0.0
    state: State = "pending"
    error: str = ""

    def due(self, now: float) -> bool:
        return self.state == "pending" and now >= self.next_at

    def after(self, outcome: Attempt, now: float) -> Delivery:
        attempts = self.attempts + 1
        if outcome.ok:
            return replace(self, attempts=attempts, state="delivered", error="")
        if attempts > len(BACKOFF_SECONDS):
            return replace(self, attempts=attempts, state="failed", error=outcome.error)
        pause = BACKOFF_SECONDS[attempts - 1]
        return replace(self, attempts=attempts, next_at=now + pause, error=outcome.error)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Delivery | None:
        """The stored state; None when missing or unreadable (a fresh delivery starts)."""
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status: int | None = None
    error: str = ""


async def attempt(
    url: str,
    secret: str,
    delivery: Delivery,
    body: bytes,
    now: float,
    *,
    allow_private: bool = False,
    client: httpx.AsyncClient | None = None,
) -> Attempt:
    """POST the signed event once (with ``client``, or a client of its own). Never raises for
    the receiver's or the secret's faults: they are outcomes, retried like any other."""
    try:
        await asyncio.to_thread(check_url, url, allow_private=allow_private)
        headers = {
            "content-type": "application/json",
            "user-agent": "llmbatch-webhooks/1",
            **sign_headers(secret, delivery.event, int(now), body),
        }
    except ValueError as exc:  # UrlRefused, or a secret that is not whsec_...
        return Attempt(ok=False, error=str(exc)[:300])
    try:
        if client is None:
            async with httpx.AsyncClient(follow_redirects=False) as own:
                response = await _post(own, url, body, headers)
        else:
            response = await _post(client, url, body, headers)
    except httpx.HTTPError as exc:
        return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
    if 200 <= response.status_code < 300:
        return Attempt(ok=True, status=response.status_code)
    return Attempt(ok=False, status=response.status_code, error=f"HTTP {response.status_code}")


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    # Redirects are not followed: a redirect could lead past the URL check.
    return await client.post(
        url, content=body, headers=headers, timeout=ATTEMPT_TIMEOUT, follow_redirects=False
    )
