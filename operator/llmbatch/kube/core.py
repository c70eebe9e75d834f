"""The request core both faces share: the request as sent (JSON, bearer token), the answer as
read (a dict, or the one KubeError), and whether a throttled answer is waited out and the
request sent again. The faces only add the I/O: ``httpx.Client`` or ``httpx.AsyncClient``."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from llmbatch.kube.connection import Connection
from llmbatch.kube.errors import error_of
from llmbatch.kube.retry import RETRY_AFTER_ATTEMPTS, parse_retry_after

logger = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# Connection failures (the API server restarting, a load balancer swapping backends) are
# retried by the transport this many times: the request never reached the server.
CONNECT_RETRIES = 3
Params = dict[str, str]


class RequestCore:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        # Calls that waited out a Retry-After (read by tests and the soak).
        self.throttled = 0

    def build(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        path: str,
        body: Any = None,
        params: Params | None = None,
        content_type: str = JSON,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Request:
        # Built per attempt: the token may have rotated while a throttled call waited.
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        token = self.connection.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return http.build_request(
            method,
            path,
            json=body,
            params=params,
            headers=headers,
            timeout=timeout or httpx.USE_CLIENT_DEFAULT,
        )

    def pause(self, request: httpx.Request, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before sending the request again, or None to take this answer."""
        if attempt >= RETRY_AFTER_ATTEMPTS:
            return None
        status = response.status_code
        seconds = parse_retry_after(status, response.headers.get("Retry-After"))
        if seconds is None:
            return None
        self.throttled += 1
        logger.info(
            "%s %s: API answered %d, retrying in %.1fs as asked",
            request.method,
            request.url.path,
            status,
            seconds,
        )
        return seconds

    @staticmethod
    def result(response: httpx.Response) -> dict[str, Any]:
        """The answer's object ({} when it has none); KubeError for a status of 400 or more."""
        if response.status_code >= 400:
            raise error_of(response)
        data = response.json() if response.content else None
        return data if isinstance(data, dict) else {}
