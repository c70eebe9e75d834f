"""The gateway's calls on its one namespace, over the one client (``llmbatch.kube``): the
BatchJobs it creates, its keys Secret and its rate-limit ConfigMaps. Requests are plain JSON, so
merge patches and resourceVersion preconditions (409 on a lost race) are explicit; ``request``
and ``stream`` (the informer's list and watch) come from ``AsyncKube``.
"""

from __future__ import annotations

from typing import Any

import httpx

from llmbatch.api.gvk import batchjobs_path
from llmbatch.kube import MERGE_PATCH, AsyncKube, Connection, load_connection


class KubeClient(AsyncKube):
    def __init__(
        self,
        connection: Connection,
        namespace: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(connection, timeout=timeout, transport=transport)
        self.namespace = namespace

    @classmethod
    def from_environment(cls, namespace: str, kubeconfig: str | None = None) -> KubeClient:
        """KUBECONFIG (or the given file, or ~/.kube/config), else the in-cluster account."""
        return cls(load_connection(kubeconfig), namespace)

    def batchjobs_path(self, name: str | None = None) -> str:
        return batchjobs_path(self.namespace, name)

    def _core(self, kind: str, name: str | None = None) -> str:
        base = f"/api/v1/namespaces/{self.namespace}/{kind}"
        return f"{base}/{name}" if name else base

    # --- BatchJobs ---------------------------------------------------------------------------
    async def create_batchjob(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", self.batchjobs_path(), body)

    async def get_batchjob(self, name: str) -> dict[str, Any]:
        return await self.request("GET", self.batchjobs_path(name))

    async def list_batchjobs(self, label_selector: str) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector}
        data = await self.request("GET", self.batchjobs_path(), params=params)
        return list(data.get("items", []))

    async def patch_batchjob(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.request(
            "PATCH", self.batchjobs_path(name), patch, content_type=MERGE_PATCH
        )

    # --- Secrets and ConfigMaps --------------------------------------------------------------
    async def get(self, kind: str, name: str) -> dict[str, Any]:
        """kind is the plural resource: "secrets" or "configmaps"."""
        return await self.request("GET", self._core(kind, name))

    async def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", self._core(kind), body)

    async def replace(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT; body.metadata.resourceVersion makes it conditional (Conflict if it moved)."""
        return await self.request("PUT", self._core(kind, name), body)

    async def ping(self) -> None:
        """Raise unless the API server answers and the BatchJob resource is served."""
        await self.request("GET", self.batchjobs_path(), params={"limit": "1"})
