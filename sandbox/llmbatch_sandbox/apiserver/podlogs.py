"""``GET .../pods/<name>/log``: container selection, tailLines/limitBytes, and ``follow``
streaming until the pod is Succeeded, Failed or deleted."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from aiohttp import web

from llmbatch_sandbox.apiserver import logs
from llmbatch_sandbox.apiserver.errors import bad_request
from llmbatch_sandbox.apiserver.resources import ResourceType
from llmbatch_sandbox.apiserver.responses import flag, int_param

if TYPE_CHECKING:
    from llmbatch_sandbox.apiserver.server import ApiServer

JSON = dict[str, Any]


async def serve_log(
    server: ApiServer, request: web.Request, rt: ResourceType, ns: str, name: str
) -> web.StreamResponse:
    pod = server.objects.get(rt, ns, name)
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    container = request.query.get("container")
    if not container:
        if len(containers) != 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one "
                f"of: [{' '.join(map(str, containers))}]"
            )
        container = str(containers[0])
    elif container not in containers:
        raise bad_request(f"container {container} is not valid for pod {name}")
    data = server.logs.read(ns, name, container)
    lines, limit = int_param(request.query, "tailLines"), int_param(request.query, "limitBytes")
    if not flag(request.query.get("follow")):
        return web.Response(body=logs.tail(data, lines, limit), content_type="text/plain")
    # Everything after ``len(data)`` is streamed: nothing appended meanwhile is lost.
    return await _follow(
        server, request, rt, (ns, name, container), logs.tail(data, lines, None), len(data)
    )


def _finished(obj: JSON | None) -> bool:
    return obj is None or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")


async def _follow(
    server: ApiServer,
    request: web.Request,
    rt: ResourceType,
    where: tuple[str, str, str],
    initial: bytes,
    offset: int,
) -> web.StreamResponse:
    ns, name, container = where
    done = asyncio.Event()
    sub = server.store.subscribe(rt.storage)
    if _finished(server.store.get(rt.storage, ns, name)):
        done.set()

    async def watch_pod() -> None:
        while True:
            change = await sub.queue.get()
            if change is None:
                break
            md = change.obj["metadata"]
            if (md.get("namespace"), md.get("name")) == (ns, name) and (
                change.type == "DELETED" or _finished(change.obj)
            ):
                break
        done.set()

    watcher = asyncio.ensure_future(watch_pod())
    server.log_followers.add(sub)
    response = web.StreamResponse()
    response.content_type = "text/plain"
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        await response.write(initial)
        async for chunk in server.logs.follow(ns, name, container, offset, done):
            await response.write(chunk)
    except ConnectionResetError:
        pass
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        server.store.unsubscribe(sub)
        server.log_followers.discard(sub)
    return response
