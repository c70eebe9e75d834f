"""The gateway's whole Kubernetes layer: a small async REST client over httpx.

The kubeconfig (KUBECONFIG, ~/.kube/config) or the in-cluster service account gives the server,
TLS material and token; requests are plain JSON so merge patches and resourceVersion
preconditions (409 on a lost race) are explicit. Only the calls the gateway needs are here.
"""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

GROUP = "llmbatch.io"
VERSION = "v1alpha1"
PLURAL = "batchjobs"
MERGE_PATCH = "application/merge-patch+json"
_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


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
        token: str | None = None,
        token_file: Path | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.namespace = namespace
        self._token = token
        self._token_file = token_file
        self._token_read_at = 0.0
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
        path = kubeconfig or os.environ.get("KUBECONFIG")
        default = Path.home() / ".kube" / "config"
        if path or default.exists():
            return cls._from_kubeconfig(path or str(default), namespace)
        if (_SA_DIR / "token").exists():
            host = os.environ["KUBERNETES_SERVICE_HOST"]
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            context = ssl.create_default_context(cafile=str(_SA_DIR / "ca.crt"))
            return cls(
                f"https://{host}:{port}", namespace, token_file=_SA_DIR / "token", verify=context
            )
        raise RuntimeError("no Kubernetes config: set KUBECONFIG or run in a cluster")

    @classmethod
    def _from_kubeconfig(cls, path: str, namespace: str) -> KubeClient:
        # The official client resolves contexts, exec plugins and embedded certificates.
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=path, client_configuration=cfg)  # type: ignore[no-untyped-call]
        verify: ssl.SSLContext | bool = bool(cfg.verify_ssl)
        if cfg.verify_ssl and (cfg.ssl_ca_cert or cfg.cert_file):
            context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if cfg.cert_file:
                context.load_cert_chain(cfg.cert_file, cfg.key_file)
            verify = context
        auth = cfg.auth_settings().get("BearerToken", {}).get("value")
        token = str(auth).removeprefix("Bearer ").strip() if auth else None
        return cls(str(cfg.host), namespace, token=token, verify=verify)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self._token_file is not None and time.monotonic() - self._token_read_at > 60:
            # Projected service-account tokens rotate; re-read them now and then.
            self._token = self._token_file.read_text().strip()
            self._token_read_at = time.monotonic()
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
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
