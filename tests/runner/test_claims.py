"""The claim order: shards start apart, skip done chunks, come back to busy ones."""

from __future__ import annotations

from llmbatch.api.plan import ChunkLease
from llmbatch.runner.claims import ChunkQueue, Wait
from llmbatch.runner.leases import Busy, Claim, Claimed, Done, Held


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _claimed(chunk: int) -> Claimed:
    return Claimed(Held(ChunkLease(chunk=chunk, holder="me"), "etag"), takeover=False)


def test_shards_start_apart_and_walk_in_a_circle() -> None:
    for shard, first in ((0, 0), (1, 3), (2, 6)):
        queue = ChunkQueue(10, shard, 3)
        order = []
        while (got := queue.acquire(_claimed)) is not None:
            assert isinstance(got, Claimed)
            order.append(got.held.chunk)
        assert order == [*range(first, 10), *range(first)]
        assert queue.finished


def test_busy_chunks_are_looked_at_again_and_done_ones_dropped() -> None:
    clock = Clock()
    state: dict[int, Claim] = {
        0: Done("other"),
        1: Busy("other", clock.now + 60),
        2: Busy("dead", clock.now + 5),
    }
    queue = ChunkQueue(3, 0, 1, recheck=15, clock=clock)

    def claim(chunk: int) -> Claim:
        return state.get(chunk) or _claimed(chunk)

    first = queue.acquire(claim)
    assert isinstance(first, Wait) and first.until == clock.now + 5.05  # the dead one's expiry
    clock.now += 6
    state[2] = _claimed(2)  # expired: taken over
    taken = queue.acquire(claim)
    assert isinstance(taken, Claimed) and taken.held.chunk == 2
    again = queue.acquire(claim)
    assert isinstance(again, Wait) and again.until == 1015.0  # the live one: rechecked
    clock.now = 1015.0
    state[1] = Done("other")
    assert queue.acquire(claim) is None and queue.finished
