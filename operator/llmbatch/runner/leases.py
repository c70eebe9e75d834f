"""Chunk leases: which shard works which chunk, kept in the object store by conditional writes.

``<output>/leases/chunk-<n>.json`` holds an ``api.plan.ChunkLease``. The protocol:

- claim: create the lease if absent (If-None-Match); if it is present and "held" but expired,
  take it over by replacing exactly the version read (If-Match on its ETag, takeovers + 1).
  Of two shards racing for one chunk, the store lets exactly one write win.
- renew: push ``expires_at`` forward (If-Match), on a timer while the chunk runs.
- complete: state "done" (If-Match) once the chunk's part is committed. A done lease is never
  taken over.
- loss: a renew or complete the store refuses means another shard took the chunk over (this
  one stalled past its lease): the shard stops feeding that chunk and drops its results.
- release (SIGTERM): expire the lease now, so another shard may take the chunk at once.

Expiry is judged by the clocks of the shards, which Kubernetes nodes keep in sync (NTP); the
lease lasts many renew intervals, so a skew of a second or two costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from llmbatch.api.layout import OutputLayout
from llmbatch.api.plan import ChunkLease
from llmbatch.api.timefmt import parse_time
from llmbatch.storage import ObjectStore, PreconditionFailed

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_RENEW_SECONDS = 15.0


class LeaseLost(Exception):
    """The store refused a renew or complete: another shard holds the chunk now."""


@dataclass(frozen=True)
class Held:
    lease: ChunkLease
    etag: str

    @property
    def chunk(self) -> int:
        return self.lease.chunk


@dataclass(frozen=True)
class Claimed:
    held: Held
    # True when an expired lease of another holder was taken over (its parts may exist).
    takeover: bool


@dataclass(frozen=True)
class Busy:
    """A live lease of another holder; worth another look at ``expires_at`` (Unix time)."""

    holder: str
    expires_at: float


@dataclass(frozen=True)
class Done:
    holder: str


Claim = Claimed | Busy | Done


def stamp(ts: float) -> str:
    # Milliseconds, not the status' whole seconds: tests run leases of a second or two.
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unix(text: str | None) -> float:
    moment = parse_time(text)
    return moment.timestamp() if moment is not None else 0.0


class Leases:
    """The lease protocol for one holder (one shard attempt) on one output prefix."""

    def __init__(
        self,
        store: ObjectStore,
        layout: OutputLayout,
        holder: str,
        seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.layout = layout
        self.holder = holder
        self.seconds = seconds
        self.clock = clock

    def _write(self, lease: ChunkLease, etag: str | None) -> Held:
        uri = self.layout.lease(lease.chunk)
        data = lease.to_json(indent=2)
        if etag is None:
            new = self.store.put_if_absent(uri, data, content_type="application/json")
        else:
            new = self.store.put_if_match(uri, data, etag, content_type="application/json")
        return Held(lease, new)

    def claim(self, chunk: int) -> Claim:
        now = self.clock()
        current = self.store.read_versioned(self.layout.lease(chunk))
        fresh = ChunkLease(
            chunk=chunk,
            holder=self.holder,
            acquired_at=stamp(now),
            renewed_at=stamp(now),
            expires_at=stamp(now + self.seconds),
        )
        if current is None:
            try:
                return Claimed(self._write(fresh, None), takeover=False)
            except PreconditionFailed:
                return self._busy_or_done(chunk)
        lease = ChunkLease.model_validate_json(current.data)
        if lease.state == "done":
            return Done(lease.holder)
        expires = _unix(lease.expires_at)
        if expires > now:
            return Busy(lease.holder, expires)
        taken = fresh.model_copy(update={"takeovers": lease.takeovers + 1})
        try:
            held = self._write(taken, current.etag)
        except PreconditionFailed:
            return self._busy_or_done(chunk)
        log.info("took over chunk %d from %s (lease expired)", chunk, lease.holder)
        return Claimed(held, takeover=True)

    def _busy_or_done(self, chunk: int) -> Claim:
        """Another holder won the race: what it wrote."""
        current = self.store.read_versioned(self.layout.lease(chunk))
        if current is None:  # deleted under us (someone cleaning up): look again later
            return Busy("", self.clock())
        lease = ChunkLease.model_validate_json(current.data)
        if lease.state == "done":
            return Done(lease.holder)
        return Busy(lease.holder, _unix(lease.expires_at))

    def _update(self, held: Held, **changes: object) -> Held:
        lease = held.lease.model_copy(update=changes)
        try:
            return self._write(lease, held.etag)
        except PreconditionFailed as exc:
            raise LeaseLost(f"lease of chunk {held.chunk} lost: another shard holds it") from exc

    def renew(self, held: Held) -> Held:
        now = self.clock()
        return self._update(held, renewed_at=stamp(now), expires_at=stamp(now + self.seconds))

    def complete(self, held: Held) -> Held:
        return self._update(held, state="done", renewed_at=stamp(self.clock()))

    def release(self, held: Held) -> None:
        """Expire the lease now (best effort: an unreleased lease just expires later)."""
        with contextlib.suppress(Exception):
            self._update(held, expires_at=stamp(self.clock()))


class LeaseKeeper:
    """The leases one shard holds, renewed by a background thread while their chunks run.

    Renewing, completing and releasing all go through one lock, so each uses the ETag of the
    previous write. A chunk whose renew is refused lands in ``lost``."""

    def __init__(self, leases: Leases, renew_seconds: float = DEFAULT_RENEW_SECONDS) -> None:
        self.leases = leases
        self.renew_seconds = renew_seconds
        self._held: dict[int, Held] = {}
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="llmbatch-lease", daemon=True)
        self._thread.start()

    def claim(self, chunk: int) -> Claim:
        outcome = self.leases.claim(chunk)
        if isinstance(outcome, Claimed):
            with self._lock:
                self._held[chunk] = outcome.held
                self._lost.discard(chunk)
        return outcome

    def lost(self, chunk: int) -> bool:
        # No lock: the main loop asks per result, and the renewer may hold the lock through a
        # slow store call; a set lookup is atomic under the GIL.
        return chunk in self._lost

    def renew_now(self, chunk: int) -> bool:
        """Renew one lease at once (before committing its part); False if it is lost."""
        with self._lock:
            return self._renew(chunk)

    def _renew(self, chunk: int) -> bool:
        held = self._held.get(chunk)
        if held is None:
            return chunk not in self._lost
        try:
            self._held[chunk] = self.leases.renew(held)
        except LeaseLost as exc:
            log.warning("%s; its results are dropped", exc)
            del self._held[chunk]
            self._lost.add(chunk)
            return False
        return True

    def complete(self, chunk: int) -> bool:
        with self._lock:
            held = self._held.pop(chunk, None)
            if held is None:
                return False
            try:
                self.leases.complete(held)
            except LeaseLost as exc:
                log.warning("%s before it was marked done", exc)
                self._lost.add(chunk)
                return False
            return True

    def release(self, chunk: int) -> None:
        with self._lock:
            held = self._held.pop(chunk, None)
            if held is not None:
                self.leases.release(held)

    def release_all(self) -> None:
        with self._lock:
            chunks = list(self._held)
        for chunk in chunks:
            self.release(chunk)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_seconds):
            with self._lock:
                for chunk in list(self._held):
                    try:
                        self._renew(chunk)
                    except Exception as exc:  # a store hiccup: the next round tries again
                        log.warning("renewing the lease of chunk %d failed: %s", chunk, exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
