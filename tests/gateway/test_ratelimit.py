"""The shared rate limit: several replicas together never admit more than the limit."""

from __future__ import annotations

import asyncio

from llmbatch.gateway.ratelimit import RateLimiter
from tests.gateway.memkube import MemKube


def limiter(kube: MemKube, now: list[float]) -> RateLimiter:
    return RateLimiter(kube.client("default"), 3600, clock=lambda: now[0])


async def test_replicas_share_the_limit_exactly() -> None:
    kube = MemKube()
    now = [7200.0]
    replicas = [limiter(kube, now) for _ in range(3)]

    async def hammer(replica: RateLimiter, n: int) -> int:
        results = await asyncio.gather(*(replica.check("key1", 250) for _ in range(n)))
        return sum(d.allowed for d in results)

    admitted = await asyncio.gather(*(hammer(r, 150) for r in replicas))
    # Chunks claimed but unused by a replica are lost to the others for this window, so the
    # total may fall short of the limit by at most replicas * chunk; it never exceeds it.
    assert sum(admitted) <= 250
    assert sum(admitted) >= 250 - 3 * (250 // 100)
    counter = kube.get("default", "configmaps", "llmbatch-ratelimit-key1")
    assert counter is not None and int(counter["data"]["count"]) <= 250

    # A new window starts from zero for everyone.
    now[0] += 3600
    fresh = await asyncio.gather(*(hammer(r, 10) for r in replicas))
    assert sum(fresh) == 30


async def test_small_limits_are_exact_across_replicas() -> None:
    kube = MemKube()
    now = [0.0]
    a, b = limiter(kube, now), limiter(kube, now)
    decisions = [await (a if i % 2 else b).check("k", 5) for i in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert all(d.limit == 5 for d in decisions)
    now[0] = 1800.5
    refused = await a.check("k", 5)
    assert not refused.allowed and abs(refused.reset_seconds - 1799.5) < 1e-6
    assert refused.headers()["x-ratelimit-reset-requests"] == "1799.500s"


async def test_keys_are_counted_separately() -> None:
    kube = MemKube()
    now = [0.0]
    one = limiter(kube, now)
    assert (await one.check("a", 1)).allowed
    assert not (await one.check("a", 1)).allowed
    assert (await one.check("b", 1)).allowed


async def test_an_exhausted_key_is_refused_without_api_calls() -> None:
    kube = MemKube()
    now = [0.0]
    one = limiter(kube, now)
    assert (await one.check("a", 2)).allowed and (await one.check("a", 2)).allowed
    assert not (await one.check("a", 2)).allowed
    calls = kube.requests
    for _ in range(20):
        assert not (await one.check("a", 2)).allowed
    assert kube.requests == calls
    now[0] += 3600
    assert (await one.check("a", 2)).allowed
