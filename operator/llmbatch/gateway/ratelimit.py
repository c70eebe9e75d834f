"""Per-key request limits shared by every gateway replica.

Design (fixed window, shared counter, claimed in chunks):

* Time is cut into fixed windows of ``rateLimit.windowSeconds`` (an hour by default) aligned
  on the epoch, so every replica agrees on the window from the wall clock alone.
* The number of requests admitted for a key in the current window lives in one ConfigMap,
  ``llmbatch-ratelimit-<key id>`` (data: ``window``, ``count``), in the gateway's namespace.
  It is only ever raised with a conditional PUT (the resourceVersion read is the precondition;
  a 409 means another replica won the race, so the replica re-reads and tries again). A new
  window resets the count in that same write.
* A replica does not write once per request: it claims a *chunk* of the allowance
  (``limit // 100``, at least 1, and smaller near the limit) and admits that many requests
  locally before claiming again. The shared count is the sum of all claims, so the replicas
  together never admit more than the limit in a window. The cost is that allowance claimed
  but not yet used by one replica is unavailable to the others until the window ends: with R
  replicas a key can be refused up to about R * chunk requests (R% of the limit) early.
  Small tiers use chunks of 1 and are exact.
* ``x-ratelimit-remaining-requests`` is the limit minus the shared count at this replica's
  last claim plus its unused local allowance: exact with one replica, an upper bound with more.
* Once a claim finds nothing left, the replica refuses the key locally until the window ends
  (the shared count never falls within a window), so a client hammering past its limit costs
  no API calls.
* If the API server cannot be reached the limiter refuses with 503 rather than admitting
  requests it cannot count.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmbatch.gateway.kube import KubeClient
from llmbatch.kube import Conflict, NotFound

CONFIGMAP_PREFIX = "llmbatch-ratelimit-"
_MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(max(0, self.remaining)),
            # OpenAI writes durations like "6m0s"; seconds with an "s" parse the same way.
            "x-ratelimit-reset-requests": f"{max(0.0, self.reset_seconds):.3f}s",
        }


@dataclass
class _KeyState:
    window: int = -1
    allowance: int = 0
    shared_count: int = 0
    exhausted: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimiter:
    def __init__(
        self,
        kube: KubeClient,
        window_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.window_seconds = window_seconds
        self.clock = clock
        self._keys: dict[str, _KeyState] = {}

    def _window(self) -> tuple[int, float]:
        now = self.clock()
        start = math.floor(now / self.window_seconds) * self.window_seconds
        return start, start + self.window_seconds - now

    async def check(self, key_id: str, limit: int) -> Decision:
        window, reset = self._window()
        state = self._keys.setdefault(key_id, _KeyState())
        async with state.lock:
            if state.window != window:
                state.window, state.allowance, state.shared_count = window, 0, 0
                state.exhausted = False
            if state.allowance == 0 and not state.exhausted:
                claimed, state.shared_count = await self._claim(key_id, window, limit)
                state.allowance += claimed
                # The shared count never falls within a window: once nothing is left, refuse
                # locally until the window ends instead of asking the API on every request.
                state.exhausted = claimed == 0
            if state.allowance == 0:
                return Decision(False, limit, 0, reset)
            state.allowance -= 1
            return Decision(True, limit, limit - state.shared_count + state.allowance, reset)

    @staticmethod
    def _chunk(limit: int, count: int) -> int:
        left = limit - count
        return max(0, min(left, max(1, min(limit // 100, left // 8))))

    async def _claim(self, key_id: str, window: int, limit: int) -> tuple[int, int]:
        """Raise the shared count by a chunk; (requests claimed, shared count after)."""
        name = CONFIGMAP_PREFIX + key_id
        for _ in range(_MAX_ATTEMPTS):
            try:
                current: dict[str, Any] | None = await self.kube.get("configmaps", name)
            except NotFound:
                current = None
            data = (current or {}).get("data") or {}
            count = int(data.get("count", 0)) if data.get("window") == str(window) else 0
            chunk = self._chunk(limit, count)
            if chunk == 0:
                return 0, count
            new_data = {"window": str(window), "count": str(count + chunk)}
            try:
                if current is None:
                    await self.kube.create(
                        "configmaps",
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {
                                "name": name,
                                "labels": {
                                    "app.kubernetes.io/part-of": "llmbatch",
                                    "app.kubernetes.io/component": "gateway",
                                },
                            },
                            "data": new_data,
                        },
                    )
                else:
                    current["data"] = new_data
                    await self.kube.replace("configmaps", name, current)
            except Conflict:
                await asyncio.sleep(0)  # another replica moved the counter: re-read it
                continue
            return chunk, count + chunk
        raise RuntimeError(f"rate-limit counter {name}: too many concurrent updates")
