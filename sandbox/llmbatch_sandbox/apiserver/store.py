"""In-memory object storage with one global, monotonic resourceVersion and a bounded history
of changes that watches replay from. Single-threaded: everything runs on the server's loop."""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmbatch_sandbox.apiserver.errors import gone

JSON = dict[str, Any]
StorageKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class Change:
    """One stored change: ``obj`` after it (the last state for DELETED), ``old`` before."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    storage: StorageKey
    obj: JSON
    old: JSON | None


@dataclass(eq=False)
class Subscriber:
    storage: StorageKey
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)

    def close(self) -> None:
        self.queue.put_nowait(None)


def object_key(obj: JSON) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Store:
    def __init__(self, history_size: int = 10000) -> None:
        self.rv = 1
        self._objects: dict[StorageKey, dict[ObjectKey, JSON]] = {}
        self._uids: dict[str, tuple[StorageKey, ObjectKey]] = {}
        self._history: deque[Change] = deque(maxlen=history_size)
        # Every change older than this is gone from history: watches from before it get 410.
        self._compacted = 1
        self.subscribers: set[Subscriber] = set()
        self.on_change: list[Callable[[Change], None]] = []

    # -- reads -----------------------------------------------------------------------------
    def get(self, storage: StorageKey, ns: str, name: str) -> JSON | None:
        obj = self._objects.get(storage, {}).get((ns, name))
        return copy.deepcopy(obj) if obj is not None else None

    def exists(self, storage: StorageKey, ns: str, name: str) -> bool:
        return (ns, name) in self._objects.get(storage, {})

    def items(self, storage: StorageKey, ns: str | None = None) -> list[JSON]:
        bucket = self._objects.get(storage, {})
        keys = sorted(k for k in bucket if ns is None or k[0] == ns)
        return [copy.deepcopy(bucket[k]) for k in keys]

    def by_uid(self, uid: str) -> tuple[StorageKey, JSON] | None:
        where = self._uids.get(uid)
        if where is None:
            return None
        obj = self._objects.get(where[0], {}).get(where[1])
        return (where[0], copy.deepcopy(obj)) if obj is not None else None

    def storages(self) -> list[StorageKey]:
        return list(self._objects)

    def all_objects(self) -> list[tuple[StorageKey, JSON]]:
        """Every stored object, not copied: read-only (writes replace objects, never mutate)."""
        return [(s, o) for s, bucket in self._objects.items() for o in bucket.values()]

    # -- writes ----------------------------------------------------------------------------
    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, storage: StorageKey, obj: JSON) -> JSON:
        """Insert or replace; stamps a new resourceVersion and notifies watchers."""
        key = object_key(obj)
        bucket = self._objects.setdefault(storage, {})
        old = bucket.get(key)
        rv = self._next_rv()
        stored = copy.deepcopy(obj)
        stored.setdefault("metadata", {})["resourceVersion"] = str(rv)
        bucket[key] = stored
        uid = stored["metadata"].get("uid")
        if uid:
            self._uids[uid] = (storage, key)
        self._emit(Change(rv, "MODIFIED" if old else "ADDED", storage, stored, old))
        return copy.deepcopy(stored)

    def remove(self, storage: StorageKey, ns: str, name: str) -> JSON | None:
        bucket = self._objects.get(storage, {})
        old = bucket.pop((ns, name), None)
        if old is None:
            return None
        rv = self._next_rv()
        final = copy.deepcopy(old)
        final["metadata"]["resourceVersion"] = str(rv)
        self._uids.pop(final["metadata"].get("uid", ""), None)
        self._emit(Change(rv, "DELETED", storage, final, old))
        return copy.deepcopy(final)

    def drop_storage(self, storage: StorageKey) -> None:
        self._objects.pop(storage, None)

    def _emit(self, change: Change) -> None:
        if len(self._history) == self._history.maxlen and self._history:
            self._compacted = self._history[0].rv
        self._history.append(change)
        for sub in list(self.subscribers):
            if sub.storage == change.storage:
                sub.queue.put_nowait(change)
        for callback in self.on_change:
            callback(change)

    # -- watch support ---------------------------------------------------------------------
    def changes_since(self, storage: StorageKey, rv: int) -> list[Change]:
        """Changes after ``rv``; 410 Gone if history no longer reaches back that far."""
        if rv < self._compacted:
            raise gone(f"too old resource version: {rv} ({self._compacted})")
        return [c for c in self._history if c.rv > rv and c.storage == storage]

    def subscribe(self, storage: StorageKey) -> Subscriber:
        sub = Subscriber(storage)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def compact(self) -> None:
        """Forget all history (a fault hook: every resumed watch then gets 410)."""
        self._history.clear()
        self._compacted = self.rv
