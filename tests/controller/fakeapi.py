"""An in-memory stand-in for ``KubeApi`` that records every call, for reconcile tests."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from llmbatch.controller.kube import KubeError


class FakeApi:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.batchjobs: dict[str, dict[str, Any]] = {}
        # KubeRay: whether the cluster serves RayJobs, the RayJobs, and pods found by label.
        self.kuberay = True
        self.rayjobs: dict[str, dict[str, Any]] = {}
        self.labelled_pods: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.status_patches = 0

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get_job {name}")
        job = self.jobs.get(name)
        return copy.deepcopy(job) if job else None

    async def create_job(self, namespace: str, body: Mapping[str, Any]) -> bool:
        name = body["metadata"]["name"]
        self.calls.append(f"create_job {name}")
        if name in self.jobs:
            return False
        self.jobs[name] = {**copy.deepcopy(dict(body)), "status": {}}
        return True

    async def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.calls.append(f"patch_job {name} {patch}")
        self.jobs[name]["spec"].update(patch.get("spec") or {})

    async def delete_job(self, namespace: str, name: str, *, wait_for_pods: bool = False) -> None:
        self.calls.append(f"delete_job {name}" + (" (foreground)" if wait_for_pods else ""))
        self.jobs.pop(name, None)

    async def list_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        self.calls.append(f"list_pods {job_name}")
        return copy.deepcopy(self.pods.get(job_name, []))

    async def list_labelled_pods(
        self, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        self.calls.append(f"list_labelled_pods {dict(labels)}")
        return [
            copy.deepcopy(pod)
            for pod in self.labelled_pods
            if labels.items() <= (pod["metadata"].get("labels") or {}).items()
        ]

    async def has_rayjob_api(self) -> bool:
        self.calls.append("has_rayjob_api")
        return self.kuberay

    async def get_rayjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get_rayjob {name}")
        rayjob = self.rayjobs.get(name)
        return copy.deepcopy(rayjob) if rayjob else None

    async def create_rayjob(self, namespace: str, body: Mapping[str, Any]) -> bool:
        name = body["metadata"]["name"]
        self.calls.append(f"create_rayjob {name}")
        if not self.kuberay:
            raise KubeError(404, "no rayjobs.ray.io API: is KubeRay installed?")
        if name in self.rayjobs:
            return False
        self.rayjobs[name] = {**copy.deepcopy(dict(body)), "status": {}}
        return True

    async def patch_rayjob(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.calls.append(f"patch_rayjob {name} {patch}")
        self.rayjobs[name]["spec"].update(patch.get("spec") or {})

    async def delete_rayjob(self, namespace: str, name: str) -> None:
        self.calls.append(f"delete_rayjob {name}")
        self.rayjobs.pop(name, None)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get_secret {name}")
        return copy.deepcopy(self.secrets.get(name))

    async def patch_batchjob_status(
        self, namespace: str, name: str, status_patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append("patch_status")
        self.status_patches += 1
        if name not in self.batchjobs:
            raise KubeError(404, f"batchjobs {name} not found")
        status = self.batchjobs[name].setdefault("status", {})
        for key, value in status_patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = copy.deepcopy(value)
        return copy.deepcopy(self.batchjobs[name])
