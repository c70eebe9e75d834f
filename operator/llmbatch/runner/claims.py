"""In which order a shard tries to claim chunks, and when it looks again at busy ones.

Shard i of n starts at chunk i*count/n and walks the chunks in a circle, so shards begin far
apart and meet only at the end. A chunk another shard holds is put aside and looked at again
when its lease would expire, or sooner (every ``recheck`` seconds) to see it done: if its
holder died, the lease is taken over; if the holder is alive it has renewed (look again
later), or finished (done, dropped). The shard is finished
when every chunk is done.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from llmbatch.runner.leases import Busy, Claim, Claimed

# A busy chunk is looked at again just after its lease expires.
_AFTER_EXPIRY = 0.05


@dataclass(frozen=True)
class Wait:
    """Nothing claimable now; try again at ``until`` (Unix time)."""

    until: float


class ChunkQueue:
    def __init__(
        self,
        count: int,
        shard: int,
        shard_count: int,
        recheck: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        start = shard * count // max(shard_count, 1) if count else 0
        self._order: deque[int] = deque([*range(start, count), *range(start)])
        self._busy: dict[int, float] = {}
        self.recheck = recheck
        self.clock = clock

    @property
    def finished(self) -> bool:
        return not self._order and not self._busy

    def acquire(self, claim: Callable[[int], Claim]) -> Claimed | Wait | None:
        """The next chunk claimed, a time to try again, or None when every chunk is done."""
        while self._order:
            outcome = self._try(self._order.popleft(), claim)
            if outcome is not None:
                return outcome
        now = self.clock()
        for chunk in sorted(c for c, due in self._busy.items() if due <= now):
            del self._busy[chunk]
            outcome = self._try(chunk, claim)
            if outcome is not None:
                return outcome
        if self._busy:
            return Wait(min(self._busy.values()))
        return None

    def _try(self, chunk: int, claim: Callable[[int], Claim]) -> Claimed | None:
        outcome = claim(chunk)
        if isinstance(outcome, Claimed):
            return outcome
        if isinstance(outcome, Busy):
            # A shard with nothing else left waits on these: it should learn of "done" soon,
            # not a whole lease later.
            self._busy[chunk] = min(outcome.expires_at + _AFTER_EXPIRY, self.clock() + self.recheck)
        return None  # Busy: looked at again later; Done: nothing left to do
