"""``/sandbox/...``: the emulator's own endpoints, for tests and processes outside the server
(fault injection, closing watches, compacting history, appending pod logs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from llmbatch_sandbox.apiserver.errors import unknown_resource
from llmbatch_sandbox.apiserver.responses import json_response

if TYPE_CHECKING:
    from llmbatch_sandbox.apiserver.server import ApiServer


async def serve_admin(
    server: ApiServer,
    request: web.Request,
    parts: list[str],
    read_body: Callable[[web.Request], Awaitable[Any]],
) -> web.StreamResponse:
    method = request.method
    if parts == ["faults"] and method == "POST":
        fault = server.faults.from_json(await read_body(request))
        return json_response({"code": fault.code, "times": fault.times}, 201)
    if parts == ["faults"] and method == "DELETE":
        server.faults.clear()
        return json_response({})
    if parts == ["close-watches"] and method == "POST":
        return json_response({"closed": server.close_watches(request.query.get("resource"))})
    if parts == ["expire-history"] and method == "POST":
        server.expire_history()
        return json_response({})
    if len(parts) == 4 and parts[0] == "logs" and method == "POST":
        server.append_pod_log(parts[1], parts[2], await request.read(), container=parts[3])
        return json_response({})
    raise unknown_resource()
