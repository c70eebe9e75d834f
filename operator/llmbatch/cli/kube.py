"""The CLI's BatchJob calls (get, create, patch status, delete) on one namespace, over the one
client (``llmbatch.kube``), with errors worded for the person at the terminal.

The kubeconfig is found at call time: ``--kubeconfig``, then the first existing file of
$KUBECONFIG, then ~/.kube/config, then the in-cluster service account; the namespace defaults to
the current context's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from llmbatch.api.gvk import batchjobs_path
from llmbatch.kube import JSON, MERGE_PATCH, Kube, KubeError, load_connection

__all__ = ["BatchJobClient", "BatchJobError", "BatchJobExists", "BatchJobNotFound", "KubeError"]


class BatchJobError(KubeError):
    """A BatchJob call failed; the message says what to check and is printed as it is."""

    def __str__(self) -> str:
        return self.message


class BatchJobNotFound(BatchJobError):
    pass


class BatchJobExists(BatchJobError):
    pass


@dataclass
class BatchJobClient:
    kube: Kube
    namespace: str

    @classmethod
    def connect(
        cls, kubeconfig: Path | None = None, namespace: str | None = None
    ) -> BatchJobClient:
        connection = load_connection(kubeconfig)
        return cls(Kube(connection), namespace or connection.namespace)

    def get(self, name: str) -> dict[str, Any]:
        return self._call("get", name, "GET", self._path(name))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("metadata", {}).get("name", ""))
        return self._call("create", name, "POST", self._path(), body)

    def patch_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of the status subresource (tests use it to play the operator)."""
        path = self._path(name) + "/status"
        return self._call("patch the status of", name, "PATCH", path, patch, MERGE_PATCH)

    def delete(self, name: str) -> None:
        self._call("delete", name, "DELETE", self._path(name))

    def _path(self, name: str | None = None) -> str:
        return batchjobs_path(self.namespace, name)

    def _call(
        self, action: str, name: str, method: str, path: str, body: Any = None, kind: str = JSON
    ) -> dict[str, Any]:
        where = f"BatchJob {self.namespace}/{name}"
        try:
            return self.kube.request(method, path, body, content_type=kind)
        except KubeError as exc:
            raise _worded(exc, action, where) from exc
        except httpx.TransportError as exc:
            raise BatchJobError(
                0, f"could not reach the Kubernetes API to {action} {where}: {exc}"
            ) from exc


def _worded(exc: KubeError, action: str, where: str) -> BatchJobError:
    if exc.not_found:
        return BatchJobNotFound(exc.status, f"{where} not found", reason=exc.reason)
    if exc.conflict and action == "create":
        message = f"{where} already exists; pick another --name"
        return BatchJobExists(exc.status, message, reason=exc.reason)
    if exc.status == 403:
        message = f"not allowed to {action} {where}: {exc.message}"
    else:
        message = f"could not {action} {where}: {exc.status} {exc.message}"
    return BatchJobError(exc.status, message, exc.retry_after, reason=exc.reason)
