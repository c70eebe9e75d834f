"""The asynchronous face of the client, for the operator and the gateway: requests and
watch streams on the event loop, no thread pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from llmbatch.kube.connection import Connection
from llmbatch.kube.core import CONNECT_RETRIES, JSON, Params, RequestCore
from llmbatch.kube.errors import error_of


class AsyncKube:
    def __init__(
        self,
        connection: Connection,
        *,
        timeout: float = 30.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.core = RequestCore(connection)
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=connection.server.rstrip("/"),
            timeout=timeout,
            # Tests may serve the API from memory.
            transport=transport
            or httpx.AsyncHTTPTransport(
                verify=connection.verify,
                limits=httpx.Limits(max_connections=max_connections),
                retries=CONNECT_RETRIES,
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Params | None = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        """The answer's object; KubeError on an error status, after waiting out throttling."""
        attempt = 0
        while True:
            attempt += 1
            request = self.core.build(self._http, method, path, body, params, content_type)
            response = await self._http.send(request)
            pause = self.core.pause(request, response, attempt)
            if pause is None:
                return self.core.result(response)
            # Waiting here holds no connection: the other calls go on meanwhile.
            await asyncio.sleep(pause)

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, path: str, params: Params, read_timeout: float = 330.0
    ) -> AsyncIterator[AsyncIterator[str]]:
        """A streamed answer (a watch) as lines; KubeError at once on an error status (not
        retried: a watcher has its own relist-and-backoff loop)."""
        timeout = httpx.Timeout(self._timeout, read=read_timeout)
        request = self.core.build(self._http, method, path, params=params, timeout=timeout)
        response = await self._http.send(request, stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                raise error_of(response)
            yield response.aiter_lines()
        finally:
            await response.aclose()
