"""Where a shard's next chunk comes from: claimed and read on a background thread.

The claim (a few lease requests) and the chunk's ranged reads run while the engine still works
the previous chunk, so the engine stays busy across chunk boundaries. One fetch at a time:
the shard asks for the next chunk only once the current one is fully submitted.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

from llmbatch.api.layout import OutputLayout
from llmbatch.runner.chunkwork import OpenChunk, committed, load_lines
from llmbatch.runner.claims import ChunkQueue, Wait
from llmbatch.runner.errors import PermanentError
from llmbatch.runner.leases import Claimed, LeaseKeeper
from llmbatch.runner.plan import read_chunk
from llmbatch.storage import ObjectStore

log = logging.getLogger(__name__)


class ChunkSource:
    def __init__(
        self,
        queue: ChunkQueue,
        keeper: LeaseKeeper,
        in_store: ObjectStore,
        input_uri: str,
        out_store: ObjectStore,
        layout: OutputLayout,
    ) -> None:
        self.queue = queue
        self.keeper = keeper
        self.in_store = in_store
        self.input_uri = input_uri
        self.out_store = out_store
        self.layout = layout
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmbatch-fetch")
        self._fetch: Future[OpenChunk | Wait | None] | None = None
        self._retry_at = 0.0
        self.exhausted = False

    @property
    def idle(self) -> bool:
        """No chunk being fetched and none left to fetch."""
        return self._fetch is None and self.exhausted

    def poll(self) -> OpenChunk | None:
        """A freshly claimed chunk if one is ready; otherwise start fetching (non-blocking)."""
        if self._fetch is None:
            if self.exhausted or time.time() < self._retry_at:
                return None
            self._fetch = self._pool.submit(self._next)
        if not self._fetch.done():
            return None
        result = self._fetch.result()
        self._fetch = None
        if result is None:
            self.exhausted = True
        elif isinstance(result, Wait):
            self._retry_at = result.until
        else:
            return result
        return None

    def wait(self, timeout: float) -> None:
        """Block until the fetch finishes or the next retry is due (at most ``timeout``)."""
        if self._fetch is not None:
            wait_futures([self._fetch], timeout=timeout)
        elif not self.exhausted:
            time.sleep(max(0.0, min(timeout, self._retry_at - time.time())))

    def _next(self) -> OpenChunk | Wait | None:
        outcome = self.queue.acquire(self.keeper.claim)
        if not isinstance(outcome, Claimed):
            return outcome
        index = outcome.held.chunk
        chunk = read_chunk(self.out_store, self.layout, index)
        done, next_part = committed(self.out_store, self.layout, index)
        if done.count:
            log.info("chunk %d: resuming, %d lines already committed", index, done.count)
        try:
            pending = load_lines(self.in_store, self.input_uri, chunk, done)
        except ValueError as exc:
            self.keeper.release(index)
            raise PermanentError(f"chunk {index} of {self.input_uri}: {exc}") from exc
        return OpenChunk(chunk, pending, next_part, resumed_lines=done.count)

    def stop(self) -> None:
        """Take no more chunks; a chunk fetched but never opened goes back at once."""
        self.exhausted = True
        fetch, self._fetch = self._fetch, None
        if fetch is not None and fetch.exception() is None:
            result = fetch.result()
            if isinstance(result, OpenChunk):
                self.keeper.release(result.index)
        self._pool.shutdown(wait=True)
