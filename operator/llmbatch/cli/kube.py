"""The CLI's way to a cluster: a Kubernetes client from a kubeconfig, and the few BatchJob
calls the commands make (get, create, patch status).

The kubeconfig is found at call time, not import time (the kubernetes package reads
$KUBECONFIG when it is imported, which is too early for tests and for ``--kubeconfig``):
an explicit path, then the first existing file in $KUBECONFIG, then ~/.kube/config, then the
in-cluster service account.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

GROUP = "llmbatch.io"
VERSION = "v1alpha1"
PLURAL = "batchjobs"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "BatchJob"


class KubeError(Exception):
    """A cluster call failed; the message says what to check."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BatchJobNotFound(KubeError):
    pass


class BatchJobExists(KubeError):
    pass


def find_kubeconfig(explicit: Path | None = None) -> Path | None:
    """The kubeconfig file to use, or None for the in-cluster service account."""
    if explicit is not None:
        if not explicit.is_file():
            raise KubeError(f"kubeconfig {explicit} does not exist")
        return explicit
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry and Path(entry).expanduser().is_file():
            return Path(entry).expanduser()
    default = Path.home() / ".kube" / "config"
    return default if default.is_file() else None


def context_namespace(kubeconfig: Path | None) -> str:
    """The namespace of the kubeconfig's current context ("default" when it names none)."""
    if kubeconfig is None:
        sa_namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        return sa_namespace.read_text().strip() if sa_namespace.is_file() else "default"
    config = _kube_config()
    try:
        _, active = config.list_kube_config_contexts(config_file=str(kubeconfig))
    except config.ConfigException:
        return "default"
    namespace = (active or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else "default"


def api_client(kubeconfig: Path | None) -> Any:
    """A ``kubernetes.client.ApiClient`` for the kubeconfig (or in-cluster config)."""
    from kubernetes import client

    config = _kube_config()
    if kubeconfig is not None:
        return config.new_client_from_config(config_file=str(kubeconfig))
    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise KubeError(
            "no kubeconfig found: set KUBECONFIG, pass --kubeconfig, or run inside a cluster"
        ) from exc
    return client.ApiClient()


def _kube_config() -> Any:
    """kubernetes.config, typed as Any: its functions carry no annotations."""
    import importlib

    return importlib.import_module("kubernetes.config")


@dataclass
class BatchJobClient:
    """The BatchJob calls of the CLI, on one namespace."""

    api: Any  # kubernetes.client.CustomObjectsApi
    namespace: str

    @classmethod
    def connect(
        cls, kubeconfig: Path | None = None, namespace: str | None = None
    ) -> BatchJobClient:
        from kubernetes import client

        path = find_kubeconfig(kubeconfig)
        return cls(client.CustomObjectsApi(api_client(path)), namespace or context_namespace(path))

    def get(self, name: str) -> dict[str, Any]:
        return self._call(
            "get",
            name,
            lambda: self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            ),
        )

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("metadata", {}).get("name", ""))
        return self._call(
            "create",
            name,
            lambda: self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            ),
        )

    def patch_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of the status subresource (tests use it to play the operator)."""
        return self._call(
            "patch the status of",
            name,
            lambda: self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, name, patch
            ),
        )

    def delete(self, name: str) -> None:
        self._call(
            "delete",
            name,
            lambda: self.api.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            ),
        )

    def _call(self, action: str, name: str, fn: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        where = f"BatchJob {self.namespace}/{name}"
        try:
            return cast(dict[str, Any], fn())
        except ApiException as exc:
            status = int(exc.status or 0)
            if status == 404:
                raise BatchJobNotFound(f"{where} not found", status) from exc
            if status == 409 and action == "create":
                raise BatchJobExists(
                    f"{where} already exists; pick another --name", status
                ) from exc
            if status == 403:
                raise KubeError(f"not allowed to {action} {where}: {_reason(exc)}", status) from exc
            raise KubeError(f"could not {action} {where}: {status} {_reason(exc)}", status) from exc
        except HTTPError as exc:
            raise KubeError(
                f"could not reach the Kubernetes API to {action} {where}: {exc}"
            ) from exc


def _reason(exc: Any) -> str:
    """The API server's own message when the body carries one."""
    import json

    try:
        return str(json.loads(exc.body).get("message", exc.reason))
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
