"""The synchronous face of the client, for the CLI: the same requests, answers, errors and
throttling as the asynchronous face, over ``httpx.Client``."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import httpx

from llmbatch.kube.connection import Connection
from llmbatch.kube.core import CONNECT_RETRIES, JSON, Params, RequestCore


class Kube:
    def __init__(
        self,
        connection: Connection,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.core = RequestCore(connection)
        self._http = httpx.Client(
            base_url=connection.server.rstrip("/"),
            timeout=timeout,
            transport=transport
            or httpx.HTTPTransport(verify=connection.verify, retries=CONNECT_RETRIES),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def request(
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
            response = self._http.send(request)
            pause = self.core.pause(request, response, attempt)
            if pause is None:
                return self.core.result(response)
            time.sleep(pause)
