"""What a fresh sandbox holds before anyone uses it: the namespaces, the BatchJob CRD (served
before the sandbox reports ready), and the Secret with the embedded S3's credentials."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import yaml

from llmbatch_sandbox.kubeapi import ApiError, KubeApi
from llmbatch_sandbox.kubelet.kubelet import NODE_NAME
from llmbatch_sandbox.s3 import S3Credentials

S3_SECRET = "llmbatch-s3"
NAMESPACES = ("default", "kube-system")
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "batchjobs.llmbatch.io.yaml"


class BootstrapError(RuntimeError):
    pass


def load_crd() -> dict[str, Any]:
    """The BatchJob CRD, generated from the API models; the YAML in ``crds/`` otherwise."""
    try:
        from llmbatch.api import crd as crd_module
    except ImportError:
        crd_module = None  # type: ignore[assignment]
    if crd_module is not None and hasattr(crd_module, "build_crd"):
        built: dict[str, Any] = crd_module.build_crd()
        return built
    if CRD_FILE.is_file():
        loaded = yaml.safe_load(CRD_FILE.read_text())
        if isinstance(loaded, dict):
            return loaded
    raise BootstrapError(
        "cannot install the BatchJob CRD: llmbatch.api.crd.build_crd is missing and "
        f"{CRD_FILE} does not exist (run `make crds`)"
    )


async def create_if_missing(api: KubeApi, path: str, body: dict[str, Any]) -> None:
    try:
        await api.create(path, body)
    except ApiError as error:
        if error.status != 409:
            raise


def s3_secret(credentials: S3Credentials) -> dict[str, Any]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": S3_SECRET, "namespace": "default"},
        "data": {
            "AWS_ACCESS_KEY_ID": b64(credentials.access_key_id),
            "AWS_SECRET_ACCESS_KEY": b64(credentials.secret_access_key),
        },
    }


def sandbox_node(gpu_slots: int) -> dict[str, Any]:
    """The one node the kubelet runs pods on (``kubectl get nodes`` shows it)."""
    import os

    capacity = {
        "cpu": str(os.cpu_count() or 1),
        "memory": "16Gi",
        "pods": "110",
        "nvidia.com/gpu": str(gpu_slots),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"},
        },
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": _node_info(),
        },
    }


def _node_info() -> dict[str, str]:
    import platform

    # Clients validate every field of NodeSystemInfo as a required string.
    return {
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
            platform.machine(), platform.machine()
        ),
        "bootID": "",
        "containerRuntimeVersion": "sandbox://local-processes",
        "kernelVersion": platform.release(),
        "kubeProxyVersion": "",
        "kubeletVersion": "v1.33.0-llmbatch-sandbox",
        "machineID": "",
        "operatingSystem": "linux",
        "osImage": "llmbatch sandbox (not a production cluster)",
        "systemUUID": "",
    }


async def bootstrap(
    api: KubeApi,
    credentials: S3Credentials,
    crd: dict[str, Any],
    gpu_slots: int = 2,
    within: float = 5.0,
) -> None:
    for namespace in NAMESPACES:
        await create_if_missing(
            api,
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
    await create_if_missing(api, "/api/v1/nodes", sandbox_node(gpu_slots))
    await create_if_missing(api, CRD_PATH, crd)
    await create_if_missing(api, "/api/v1/namespaces/default/secrets", s3_secret(credentials))
    await wait_served(api, crd, within)


async def wait_served(api: KubeApi, crd: dict[str, Any], within: float) -> None:
    """Until the CRD's resource answers a list (what a client does first)."""
    spec = crd["spec"]
    version = next(v["name"] for v in spec["versions"] if v.get("served", True))
    path = f"/apis/{spec['group']}/{version}/{spec['names']['plural']}"
    deadline = time.monotonic() + within
    while True:
        try:
            await api.list(path)
            return
        except ApiError:
            if time.monotonic() > deadline:
                raise BootstrapError(f"the CRD {crd['metadata']['name']} is not served") from None
        await asyncio.sleep(0.05)
