"""The gateway's whole Kubernetes layer: a small async REST client over httpx.

``kubeconfig.connect`` finds the server, TLS material and token (KUBECONFIG, ~/.kube/config or
the in-cluster service account); requests are plain JSON so merge patches and resourceVersion
preconditions (409 on a lost race) are explicit. Only the calls the gateway needs are here.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from llmbatch.gateway import kubeconfig as kubeconfig_module

GROUP = "llmbatch.io"
VERSION = "v1alpha1"
PLURAL = "batchjobs"
MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API answered {status}: {message}")
        self.status = status
        self.message = message


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409: the object already exists, or its resourceVersion changed since it was read."""


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = str(response.json().get("message", response.text))
    except ValueError:
        message = response.text
    kind = {404: NotFound, 409: Conflict}.get(response.status_code, KubeError)
    raise kind(response.status_code, message[:500])


class KubeClient:
    def __init__(
        self,
        server: str,
        namespace: str,
        *,
        token: Callable[[], str | None] | str | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.namespace = namespace
        self._token = token if callable(token) else (lambda: token)
        self._http = httpx.AsyncClient(
            base_url=self.server,
            verify=verify,
            timeout=timeout,
            limits=httpx.Limits(max_connections=64),
            # Tests may serve the API from memory.
            transport=transport,
        )

    @classmethod
    def from_environment(cls, namespace: str, kubeconfig: str | None = None) -> KubeClient:
        """KUBECONFIG (or the given file, or ~/.kube/config), else the in-cluster account."""
        connection = kubeconfig_module.connect(kubeconfig)
        return cls(connection.server, namespace, token=connection.token, verify=connection.verify)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        response = await self._http.request(
            method,
            path,
            json=body,
            params=params,
            headers=self._headers(content_type if body is not None else None),
        )
        _raise_for(response)
        data = response.json()
        return data if isinstance(data, dict) else {}

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, path: str, params: dict[str, str], read_timeout: float = 330.0
    ) -> AsyncIterator[AsyncIterator[str]]:
        """A streamed answer (a watch) as lines; raises like ``request`` on an error status."""
        timeout = httpx.Timeout(10.0, read=read_timeout)
        async with self._http.stream(
            method, path, params=params, headers=self._headers(None), timeout=timeout
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response)
            yield response.aiter_lines()

    def batchjobs_path(self) -> str:
        return self._batchjobs()

    # --- paths -------------------------------------------------------------------------------
    def _batchjobs(self, name: str | None = None) -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}"
        return f"{base}/{name}" if name else base

    def _core(self, kind: str, name: str | None = None) -> str:
        base = f"/api/v1/namespaces/{self.namespace}/{kind}"
        return f"{base}/{name}" if name else base

    # --- BatchJobs ---------------------------------------------------------------------------
    async def create_batchjob(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", self._batchjobs(), body=body)

    async def get_batchjob(self, name: str) -> dict[str, Any]:
        return await self.request("GET", self._batchjobs(name))

    async def list_batchjobs(self, label_selector: str) -> list[dict[str, Any]]:
        data = await self.request(
            "GET", self._batchjobs(), params={"labelSelector": label_selector}
        )
        return list(data.get("items", []))

    async def patch_batchjob(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.request(
            "PATCH", self._batchjobs(name), body=patch, content_type=MERGE_PATCH
        )

    # --- Secrets and ConfigMaps --------------------------------------------------------------
    async def get(self, kind: str, name: str) -> dict[str, Any]:
        """kind is the plural resource: "secrets" or "configmaps"."""
        return await self.request("GET", self._core(kind, name))

    async def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", self._core(kind), body=body)

    async def replace(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT; body.metadata.resourceVersion makes it conditional (Conflict if it moved)."""
        return await self.request("PUT", self._core(kind, name), body=body)

    async def ping(self) -> None:
        """Raise unless the API server answers and the BatchJob resource is served."""
        await self.request("GET", self._batchjobs(), params={"limit": "1"})
