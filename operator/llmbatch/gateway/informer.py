"""A watch-fed cache of the gateway's BatchJobs, so reading a batch costs no API call.

One list, then one watch (``?watch=1`` from the list's resourceVersion) keeps every BatchJob the
gateway created (label ``app.kubernetes.io/managed-by=llmbatch-gateway``) in memory, the way
Kubernetes controllers' informers do. Reads are served from it only while the watch stream is
up; before the first list, after a failure and while re-listing, reads go to the API server.
A batch this replica has not seen yet (just created through another replica) is fetched from
the API on a miss. Objects this replica writes are put in the cache from the write's answer,
so a client reads its own writes; the newer resourceVersion wins when both are numbers
(etcd's are), so a late watch event cannot roll an object back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from llmbatch.gateway.kube import KubeClient
from llmbatch.kube import KubeError

log = logging.getLogger(__name__)

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=llmbatch-gateway"
_WATCH_SECONDS = 300
_MAX_BACKOFF = 30.0


def _version(obj: dict[str, Any]) -> int | None:
    value = str(obj.get("metadata", {}).get("resourceVersion", ""))
    return int(value) if value.isdigit() else None


class BatchJobCache:
    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self._objects: dict[str, dict[str, Any]] = {}
        self.live = False
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batchjob-informer")

    async def stop(self) -> None:
        self.live = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.5
        while True:
            try:
                version = await self._relist()
                started = loop.time()
                await self._watch(version)
                # A watch the server ends at once is as good as a failure: do not spin.
                if loop.time() - started < 1.0:
                    raise KubeError(500, "the watch ended immediately")
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: fall back to the API, then relist
                self.live = False
                log.warning(
                    "BatchJob watch failed (%s); serving reads from the API server for %.1f s",
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(_MAX_BACKOFF, backoff * 2)

    async def _relist(self) -> str:
        data = await self.kube.request(
            "GET", self.kube.batchjobs_path(), params={"labelSelector": MANAGED_SELECTOR}
        )
        self._objects = {item["metadata"]["name"]: item for item in data.get("items", [])}
        return str(data.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, version: str) -> None:
        params = {
            "watch": "1",
            "labelSelector": MANAGED_SELECTOR,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(_WATCH_SECONDS),
        }
        if version:
            params["resourceVersion"] = version
        async with self.kube.stream("GET", self.kube.batchjobs_path(), params) as lines:
            self.live = True
            async for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    # 410 Gone (history compacted) and the like: relist.
                    raise KubeError(int(obj.get("code", 500)), str(obj.get("message")))
                if kind == "BOOKMARK":
                    continue
                name = obj.get("metadata", {}).get("name")
                if not name:
                    continue
                if kind == "DELETED":
                    self._objects.pop(name, None)
                else:
                    self._put(obj)
        # The server ended the watch (timeoutSeconds): relist and watch again.
        self.live = False

    # --- reads and local writes --------------------------------------------------------------
    def _put(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        current = self._objects.get(name)
        if current is not None:
            new, old = _version(obj), _version(current)
            if new is not None and old is not None and new < old:
                return
        self._objects[name] = obj

    def remember(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Record an object this replica just wrote (its answer from the API)."""
        if obj.get("metadata", {}).get("name"):
            self._put(obj)
        return obj

    async def get(self, name: str) -> dict[str, Any]:
        if self.live:
            cached = self._objects.get(name)
            if cached is not None:
                return cached
        obj = await self.kube.get_batchjob(name)
        if self.live:
            self._put(obj)
        return obj

    async def list(self, label_selector: str) -> list[dict[str, Any]]:
        if not self.live:
            return await self.kube.list_batchjobs(label_selector)
        wanted = dict(term.split("=", 1) for term in label_selector.split(",") if term)
        return [
            obj
            for obj in self._objects.values()
            if all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]
