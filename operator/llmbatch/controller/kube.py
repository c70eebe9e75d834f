"""The operator's calls to the Kubernetes API, as plain JSON dicts, over the one client
(``llmbatch.kube``): the pure builders' output goes to the API unchanged.

Every call the operator makes itself is a method here, and this is the controller's only module
that talks to the API: tests/security/test_rbac.py records what each method sends and holds the
chart's RBAC to exactly that. A 409 AlreadyExists on create is success (creation is idempotent
by name); a 404 reads as None, or as done for a delete. Throttling (429, Retry-After) is waited
out by the client, as the server asks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from llmbatch.api.gvk import batchjobs_path
from llmbatch.controller.kuberay import RAYJOB_GROUP, RAYJOB_PLURAL, RAYJOB_VERSION
from llmbatch.kube import MERGE_PATCH, AsyncKube, Connection, KubeError, load_connection

__all__ = ["KubeApi", "KubeError"]


class KubeApi:
    def __init__(
        self,
        configuration: Connection | None = None,
        *,
        workers: int = 8,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # In a pod, the service account first, as kopf's own login does: both talk to the
        # same cluster. ``workers`` bounds the requests in flight (the connection pool).
        self._kube = AsyncKube(
            configuration or load_connection(in_cluster_first=True),
            timeout=timeout,
            max_connections=workers,
            transport=transport,
        )
        # Read by the benchmark: how many status writes the operator made.
        self.status_patches = 0
        # The pool's closing, once ``close`` has started it (awaited by whoever must know).
        self.closing: asyncio.Task[None] | None = None

    @property
    def throttled(self) -> int:
        """Calls that waited out a Retry-After (read by tests and the soak)."""
        return self._kube.core.throttled

    def close(self) -> None:
        """Synchronous, as kopf's cleanup handler calls it: closing the pool's sockets waits on
        nothing, so a task on the running loop does it."""
        self.closing = asyncio.get_running_loop().create_task(self.aclose())

    async def aclose(self) -> None:
        await self._kube.aclose()

    # --- batch/v1 Jobs ----------------------------------------------------------------------

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._kube.request("GET", _jobs(namespace, name))
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def create_job(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """True when created now, False when it already existed (409 is success)."""
        try:
            await self._kube.request("POST", _jobs(namespace), dict(body))
        except KubeError as exc:
            if exc.conflict:
                return False
            raise
        return True

    async def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        await self._kube.request(
            "PATCH", _jobs(namespace, name), dict(patch), content_type=MERGE_PATCH
        )

    async def delete_job(self, namespace: str, name: str, *, wait_for_pods: bool = False) -> None:
        """Deletes the Job and, in the background, its pods. 404 is success. With
        ``wait_for_pods`` (foreground deletion) the Job stays, marked for deletion, until its
        pods are gone: who reads it knows they may still be writing."""
        policy = "Foreground" if wait_for_pods else "Background"
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy}
        try:
            await self._kube.request("DELETE", _jobs(namespace, name), options)
        except KubeError as exc:
            if not exc.not_found:
                raise

    # --- KubeRay RayJobs (spec.ray.workers) --------------------------------------------------

    async def has_rayjob_api(self) -> bool:
        """Whether the cluster serves KubeRay's RayJob (ray.io/v1 rayjobs). A discovery read,
        which Kubernetes grants every authenticated client (ClusterRole system:discovery)."""
        try:
            found = await self._kube.request("GET", f"/apis/{RAYJOB_GROUP}/{RAYJOB_VERSION}")
        except KubeError as exc:
            if exc.not_found:
                return False
            raise
        return any(r.get("name") == RAYJOB_PLURAL for r in found.get("resources") or [])

    async def get_rayjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._kube.request("GET", _rayjobs(namespace, name))
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def create_rayjob(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """True when created now, False when it already existed (409 is success)."""
        try:
            await self._kube.request("POST", _rayjobs(namespace), dict(body))
        except KubeError as exc:
            if exc.conflict:
                return False
            if exc.not_found:
                raise KubeError(
                    404, f"no {RAYJOB_PLURAL}.{RAYJOB_GROUP} API: is KubeRay installed?"
                ) from exc
            raise
        return True

    async def patch_rayjob(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        await self._kube.request(
            "PATCH", _rayjobs(namespace, name), dict(patch), content_type=MERGE_PATCH
        )

    async def delete_rayjob(self, namespace: str, name: str) -> None:
        """Deletes the RayJob; Kubernetes then removes its cluster and submitter Job (KubeRay
        owns them). 404 is success."""
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self._kube.request("DELETE", _rayjobs(namespace, name), options)
        except KubeError as exc:
            if not exc.not_found:
                raise

    # --- pods and secrets -------------------------------------------------------------------

    async def list_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        return await self.list_labelled_pods(namespace, {"job-name": job_name})

    async def list_labelled_pods(
        self, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """The pods that carry every one of ``labels`` (a RayJob's: KubeRay keeps ours)."""
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        result = await self._kube.request(
            "GET", _core(namespace, "pods"), params={"labelSelector": selector}
        )
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Read only to check existence and to get the credentials for a head call; the
        values never leave the operator's memory."""
        try:
            return await self._kube.request("GET", _core(namespace, "secrets", name))
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    # --- BatchJob metadata and status -------------------------------------------------------

    async def annotate_batchjob(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> dict[str, Any]:
        """Merge our own bookkeeping annotations (llmbatch.io/...) into the BatchJob."""
        return await self._kube.request(
            "PATCH",
            batchjobs_path(_q(namespace), _q(name)),
            {"metadata": {"annotations": dict(annotations)}},
            content_type=MERGE_PATCH,
        )

    async def patch_batchjob_status(
        self, namespace: str, name: str, status_patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.status_patches += 1
        return await self._kube.request(
            "PATCH",
            batchjobs_path(_q(namespace), _q(name)) + "/status",
            {"status": dict(status_patch)},
            content_type=MERGE_PATCH,
        )


def _jobs(namespace: str, name: str | None = None) -> str:
    base = f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs"
    return f"{base}/{_q(name)}" if name else base


def _rayjobs(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{RAYJOB_GROUP}/{RAYJOB_VERSION}/namespaces/{_q(namespace)}/{RAYJOB_PLURAL}"
    return f"{base}/{_q(name)}" if name else base


def _core(namespace: str, plural: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{_q(namespace)}/{plural}"
    return f"{base}/{_q(name)}" if name else base


def _q(part: str) -> str:
    return quote(part, safe="")
