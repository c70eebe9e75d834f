"""The operator's thin Kubernetes layer: a few REST calls as plain JSON dicts.

The ``kubernetes`` client loads credentials the way every tool does (in-cluster service
account, or KUBECONFIG with exec plugins and token refresh) and sends the requests; bodies stay
dicts, so the pure builders' output goes to the API unchanged. The client is synchronous, so
calls run in a small thread pool. A 409 AlreadyExists on create is success: creation is
idempotent by name.

Throttling: an API server (or its priority-and-fairness layer) that answers 429, or a 5xx with
a Retry-After header, is asking for that exact pause. The call waits that long (capped) and
tries again, a few times, as client-go does, instead of failing the whole reconcile pass and
falling into the caller's exponential backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import kubernetes.client
import kubernetes.config

from llmbatch.controller.config import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"


# A Retry-After longer than this is clipped: the reconcile loop has its own timers (deadline,
# progress) that must not wait behind a single call.
MAX_RETRY_AFTER = 10.0
RETRY_AFTER_ATTEMPTS = 5


class KubeError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"Kubernetes API answered {status}: {message}")
        self.status = status
        self.message = message
        # Seconds the server asked us to wait (429, or a 5xx with Retry-After); None otherwise.
        self.retry_after = retry_after


def parse_retry_after(status: int, value: str | None) -> float | None:
    """The pause a response asks for, or None when it asks for none (or is not retryable).

    Only 429 and 5xx count, as in client-go: a 4xx other than 429 will fail the same way
    again. A 429 without the header still means "slow down": one second. The HTTP-date form
    of the header is not used by the Kubernetes API server and is treated as one second.
    """
    if status != 429 and not (500 <= status <= 599 and value):
        return None
    try:
        seconds = float(value) if value else 1.0
    except ValueError:
        seconds = 1.0
    if seconds != seconds or seconds < 0:  # NaN or negative
        seconds = 1.0
    return min(seconds, MAX_RETRY_AFTER)


def load_configuration() -> kubernetes.client.Configuration:
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


class KubeApi:
    def __init__(
        self,
        configuration: kubernetes.client.Configuration | None = None,
        *,
        workers: int = 8,
        timeout: float = 30.0,
    ) -> None:
        configuration = configuration or load_configuration()
        configuration.connection_pool_maxsize = max(workers, 4)
        self._client = kubernetes.client.ApiClient(configuration)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self._timeout = timeout
        # Read by the benchmark: how many status writes the operator made.
        self.status_patches = 0
        # Calls that waited out a Retry-After (read by tests and the soak).
        self.throttled = 0

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()  # type: ignore[no-untyped-call]

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> Any:
        headers = {"Accept": JSON, "Content-Type": content_type}
        serialized = self._client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()) or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(*serialized, _request_timeout=self._timeout)
        raw = response.read()  # type: ignore[no-untyped-call]
        status = int(response.status)
        data = json.loads(raw) if raw else None
        if status >= 400:
            message = data.get("message", "") if isinstance(data, dict) else str(raw)[:300]
            retry_after = parse_retry_after(status, response.headers.get("Retry-After"))
            raise KubeError(status, str(message), retry_after)
        return data

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> Any:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await loop.run_in_executor(
                    self._executor, self._call, method, path, body, query, content_type
                )
            except KubeError as exc:
                if exc.retry_after is None or attempt == RETRY_AFTER_ATTEMPTS:
                    raise
                # Waiting here, not in the worker thread, keeps the pool free for the other
                # BatchJobs' calls while this one sits out the server's pause.
                self.throttled += 1
                logger.info(
                    "%s %s: API answered %d, retrying in %.1fs as asked",
                    method,
                    path,
                    exc.status,
                    exc.retry_after,
                )
                await asyncio.sleep(exc.retry_after)

    # --- batch/v1 Jobs ----------------------------------------------------------------------

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request(
                "GET", f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs/{_q(name)}"
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def create_job(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """True when created now, False when it already existed (409 is success)."""
        try:
            await self.request("POST", f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs", body)
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        await self.request(
            "PATCH",
            f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs/{_q(name)}",
            patch,
            content_type=MERGE_PATCH,
        )

    async def delete_job(self, namespace: str, name: str) -> None:
        """Deletes the Job and, in the background, its pods. 404 is success."""
        try:
            await self.request(
                "DELETE",
                f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs/{_q(name)}",
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    # --- pods and secrets -------------------------------------------------------------------

    async def list_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        result = await self.request(
            "GET",
            f"/api/v1/namespaces/{_q(namespace)}/pods",
            query={"labelSelector": f"job-name={job_name}"},
        )
        items: list[dict[str, Any]] = (result or {}).get("items") or []
        return items

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Read only to check existence and to get the credentials for a head call; the
        values never leave the operator's memory."""
        try:
            result: dict[str, Any] = await self.request(
                "GET", f"/api/v1/namespaces/{_q(namespace)}/secrets/{_q(name)}"
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    # --- BatchJob status --------------------------------------------------------------------

    async def patch_batchjob_status(
        self, namespace: str, name: str, status_patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.status_patches += 1
        result: dict[str, Any] = await self.request(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{PLURAL}/{_q(name)}/status",
            {"status": dict(status_patch)},
            content_type=MERGE_PATCH,
        )
        return result


def _q(part: str) -> str:
    return quote(part, safe="")
