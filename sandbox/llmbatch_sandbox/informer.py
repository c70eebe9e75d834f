"""List-then-watch caches of one resource collection, the way client-go informers work: list
to get a resourceVersion, watch from it, resume after a closed stream from the last version
seen (bookmarks included), and list again only when the version is too old (410 Gone)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from llmbatch_sandbox.kubeapi import ApiError, JsonObject, KubeApi, WatchExpired

log = logging.getLogger(__name__)

Key = tuple[str, str]
Handler = Callable[[str, JsonObject], Awaitable[None] | None]


def object_key(obj: JsonObject) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _version(obj: JsonObject) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Informer:
    """Keeps ``cache`` in step with the collection at ``path`` and calls ``handler(event_type,
    obj)`` for every change (``ADDED``/``MODIFIED``/``DELETED``; the initial list arrives as
    ADDED). Writers can :meth:`remember` the objects their own writes returned so that the
    next reconcile does not act on a stale copy; older versions are then ignored."""

    def __init__(self, api: KubeApi, path: str, handler: Handler) -> None:
        self.api = api
        self.path = path
        self.handler = handler
        self.cache: dict[Key, JsonObject] = {}
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"informer {self.path}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def remember(self, obj: JsonObject) -> None:
        key = object_key(obj)
        current = self.cache.get(key)
        if current is None or _version(obj) >= _version(current):
            self.cache[key] = obj

    def forget(self, obj: JsonObject) -> None:
        current = self.cache.get(object_key(obj))
        if current is not None and current["metadata"].get("uid") == obj["metadata"].get("uid"):
            del self.cache[object_key(obj)]

    async def _run(self) -> None:
        version = ""
        while True:
            try:
                if not version:
                    version = await self._relist()
                async for event in self.api.watch(self.path, version):
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    new_version = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_version:
                        version = str(new_version)
                    if kind == "BOOKMARK":
                        continue
                    await self._apply(str(kind), obj)
            except WatchExpired:
                version = ""
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, ApiError, OSError) as error:
                log.debug("watch %s interrupted: %s", self.path, error)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("informer %s failed; listing again", self.path)
                version = ""
                await asyncio.sleep(0.5)

    async def _relist(self) -> str:
        listing = await self.api.list(self.path)
        fresh = {object_key(item): item for item in listing.get("items") or []}
        for key, old in list(self.cache.items()):
            if key not in fresh:
                del self.cache[key]
                await self._call("DELETED", old)
        for item in fresh.values():
            await self._apply("ADDED", item)
        self.synced.set()
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    async def _apply(self, kind: str, obj: JsonObject) -> None:
        key = object_key(obj)
        if kind == "DELETED":
            self.cache.pop(key, None)
        else:
            current = self.cache.get(key)
            same_object = current is not None and (
                current["metadata"].get("uid") == obj["metadata"].get("uid")
            )
            if same_object and current is not None and _version(obj) < _version(current):
                return  # our own write already put a newer version here
            self.cache[key] = obj
        await self._call(kind, obj)

    async def _call(self, kind: str, obj: JsonObject) -> None:
        try:
            result = self.handler(kind, obj)
            if result is not None:
                await result
        except Exception:
            log.exception("handler for %s %s failed", kind, object_key(obj))


def items(cache: dict[Key, Any]) -> list[JsonObject]:
    return list(cache.values())
