"""Watch streams: newline-delimited ``{"type", "object"}`` events over a chunked response,
resuming from a resourceVersion, with bookmarks, timeouts and selector transitions (an object
that stops matching a selector is DELETED for that watch, one that starts matching is ADDED)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llmbatch_sandbox.apiserver.errors import ApiError
from llmbatch_sandbox.apiserver.resources import ResourceType
from llmbatch_sandbox.apiserver.selectors import Filter
from llmbatch_sandbox.apiserver.store import Change, Store, Subscriber

JSON = dict[str, Any]


@dataclass
class WatchRequest:
    rt: ResourceType
    filter: Filter
    resource_version: str | None
    timeout: float | None
    bookmarks: bool
    send_initial_events: bool
    render: Callable[[JSON], JSON]


def translate(change: Change, flt: Filter) -> str | None:
    """The event type this watch sees for ``change``, or None when it is not its business."""
    now = flt.matches(change.obj)
    before = change.old is not None and flt.matches(change.old)
    if change.type == "ADDED":
        return "ADDED" if now else None
    if change.type == "DELETED":
        return "DELETED" if before or now else None
    if now and before:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if before else None


class WatchStream:
    """One open watch; ``close()`` ends it (server stop, fault injection)."""

    def __init__(self, store: Store, request: WatchRequest, bookmark_interval: float) -> None:
        self.store = store
        self.req = request
        self.bookmark_interval = bookmark_interval
        self.sub: Subscriber | None = None
        self.closed = False

    def close(self) -> None:
        self.closed = True
        if self.sub is not None:
            self.sub.close()

    async def serve(self, http: web.Request) -> web.StreamResponse:
        req = self.req
        backlog: list[tuple[str, JSON]] = []
        error: ApiError | None = None
        rv_text = req.resource_version
        # Subscribing and reading the backlog happen with no await between: nothing is missed.
        self.sub = self.store.subscribe(req.rt.storage)
        if rv_text in (None, "", "0") or req.send_initial_events:
            for obj in self.store.items(req.rt.storage, req.filter.namespace):
                if req.filter.matches(obj):
                    backlog.append(("ADDED", obj))
        else:
            try:
                since = int(str(rv_text))
            except ValueError:
                self.store.unsubscribe(self.sub)
                raise ApiError(400, f"invalid resource version: {rv_text!r}") from None
            try:
                for change in self.store.changes_since(req.rt.storage, since):
                    kind = translate(change, req.filter)
                    if kind:
                        backlog.append((kind, change.obj))
            except ApiError as exc:
                error = exc
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        try:
            await response.prepare(http)
            if error is not None:
                await self._send(response, "ERROR", error.status())
                return response
            for kind, obj in backlog:
                await self._send(response, kind, req.render(obj))
            if req.send_initial_events and req.bookmarks:
                await self._bookmark(response, initial_end=True)
            await self._pump(response)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unsubscribe(self.sub)
        return response

    async def _pump(self, response: web.StreamResponse) -> None:
        assert self.sub is not None
        req = self.req
        # Without timeoutSeconds Kubernetes picks 30-60 minutes; so do we.
        timeout = req.timeout if req.timeout is not None else random.uniform(1800, 3600)
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + self.bookmark_interval
        while not self.closed:
            now = time.monotonic()
            if now >= deadline:
                if req.bookmarks:
                    await self._bookmark(response)
                return
            wait = deadline - now
            if req.bookmarks:
                wait = min(wait, max(next_bookmark - now, 0))
            try:
                change = await asyncio.wait_for(self.sub.queue.get(), timeout=wait)
            except TimeoutError:
                if req.bookmarks and time.monotonic() >= next_bookmark:
                    await self._bookmark(response)
                    next_bookmark = time.monotonic() + self.bookmark_interval
                continue
            if change is None:
                return
            kind = translate(change, req.filter)
            if kind:
                await self._send(response, kind, req.render(change.obj))

    async def _send(self, response: web.StreamResponse, kind: str, obj: JSON) -> None:
        line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
        await response.write(line.encode())

    async def _bookmark(self, response: web.StreamResponse, initial_end: bool = False) -> None:
        meta: JSON = {"resourceVersion": str(self.store.rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": self.req.rt.kind, "apiVersion": self.req.rt.api_version, "metadata": meta}
        await self._send(response, "BOOKMARK", obj)
