"""Where the connection comes from, found at call time (never at import time, which is too
early for tests and for ``--kubeconfig``): an explicit kubeconfig path, else the first existing
file of $KUBECONFIG, else ~/.kube/config, else the in-cluster service account."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from llmbatch.kube.connection import Connection, RefreshingToken
from llmbatch.kube.errors import KubeError
from llmbatch.kube.kubeconfig import from_kubeconfig

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def find_kubeconfig(explicit: str | Path | None = None) -> Path | None:
    """The kubeconfig file to use, or None for the in-cluster service account."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise KubeError(0, f"kubeconfig {explicit} does not exist")
        return Path(explicit)
    # Like kubectl, a KUBECONFIG list is searched in order.
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry and Path(entry).expanduser().is_file():
            return Path(entry).expanduser()
    default = Path.home() / ".kube" / "config"
    return default if default.is_file() else None


def in_cluster_available() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ and (SERVICE_ACCOUNT_DIR / "token").is_file()


def in_cluster() -> Connection:
    """The pod's service account: its CA, its (rotating) token and its namespace."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:  # an IPv6 service address
        host = f"[{host}]"
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
    token_file = SERVICE_ACCOUNT_DIR / "token"
    namespace_file = SERVICE_ACCOUNT_DIR / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else "default"
    token = RefreshingToken(lambda: token_file.read_text().strip())
    return Connection(f"https://{host}:{port}", context, token, namespace or "default")


def load_connection(
    kubeconfig: str | Path | None = None, *, in_cluster_first: bool = False
) -> Connection:
    """The connection to use. ``in_cluster_first`` prefers the service account when running in
    a pod (the operator does, as kopf's own login does, so both talk to the same cluster)."""
    if in_cluster_first and kubeconfig is None and in_cluster_available():
        return in_cluster()
    path = find_kubeconfig(kubeconfig)
    if path is not None:
        return from_kubeconfig(path)
    if in_cluster_available():
        return in_cluster()
    raise KubeError(
        0, "no kubeconfig found: set KUBECONFIG, pass --kubeconfig, or run inside a cluster"
    )
