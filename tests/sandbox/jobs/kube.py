"""Helpers for the Job/kubelet tests: manifests, raw-JSON reads and condition waits. The tests
use the `kubernetes` client, so they run unchanged against a real cluster
(LLMBATCH_E2E_KUBECONFIG); commands are tiny Python programs (image python:3.12-slim there,
the virtualenv's python in the sandbox)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")
NS = "default"
IMAGE = "python:3.12-slim"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# A real cluster pulls images and backs off 10 s and more between retries: the fixtures raise
# this for LLMBATCH_E2E_KUBECONFIG runs.
TIMEOUT_SCALE = {"value": 1.0}


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``
    (times TIMEOUT_SCALE)."""
    timeout *= TIMEOUT_SCALE["value"]
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def py(code: str) -> list[str]:
    return ["python", "-c", code]


def container(code: str, **extra: Any) -> dict[str, Any]:
    return {"name": "main", "image": IMAGE, "command": py(code), **extra}


def job_manifest(name: str, code: str, **spec: Any) -> dict[str, Any]:
    pod_spec = spec.pop("pod_spec", {})
    container_extra = spec.pop("container", {})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 2,
                    "containers": [container(code, **container_extra)],
                    **pod_spec,
                }
            },
            **spec,
        },
    }


class Kube:
    """Thin JSON-in, JSON-out wrappers over the generated client."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(response.data)
        return data

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self._json(self.batch.create_namespaced_job(NS, manifest, _preload_content=False))

    def job(self, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.batch.read_namespaced_job(name, NS, _preload_content=False))
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch_job(self, name: str, patch: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job(name, NS, patch)

    def delete_job(self, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, NS, propagation_policy="Background")
        except client.ApiException as error:
            if error.status != 404:
                raise

    def pods(self, selector: str) -> list[dict[str, Any]]:
        listing = self._json(
            self.core.list_namespaced_pod(NS, label_selector=selector, _preload_content=False)
        )
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    def job_pods(self, job: str) -> list[dict[str, Any]]:
        return self.pods(f"batch.kubernetes.io/job-name={job}")

    def pod(self, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.core.read_namespaced_pod(name, NS, _preload_content=False))
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_pod(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self._json(self.core.create_namespaced_pod(NS, manifest, _preload_content=False))

    def delete_pod(self, name: str, grace: int | None = None) -> None:
        try:
            self.core.delete_namespaced_pod(name, NS, grace_period_seconds=grace)
        except client.ApiException as error:
            if error.status != 404:
                raise

    def annotate_pod(self, name: str, annotations: dict[str, str]) -> None:
        self.core.patch_namespaced_pod(name, NS, {"metadata": {"annotations": annotations}})

    def logs(self, pod: str) -> str:
        text: str = self.core.read_namespaced_pod_log(pod, NS)
        return text


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind and item.get("status") == "True":
            return dict(item)
    return None


def phase(pod: dict[str, Any] | None) -> str:
    return str(((pod or {}).get("status") or {}).get("phase") or "")


def terminated(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        state = (status.get("state") or {}).get("terminated")
        if state:
            return dict(state)
    return None
