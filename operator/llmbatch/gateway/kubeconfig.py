"""Where the Kubernetes API is and how to authenticate: a kubeconfig file or the in-cluster
service account.

Tokens, client certificates and CAs (files or inline data) are read here directly; only
kubeconfigs whose user runs an ``exec`` plugin or an ``auth-provider`` (EKS, GKE, OIDC) go
through the official client, which knows those plugins but costs the gateway 10 MB more memory.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Re-read rotating tokens (projected service-account tokens, exec plugin tokens) this often.
TOKEN_REFRESH_SECONDS = 60.0


@dataclass
class Connection:
    server: str
    verify: ssl.SSLContext | bool
    # Called before each request; returns the bearer token (or None) and caches as it likes.
    token: Callable[[], str | None]


class _Refreshing:
    """A token read by ``load`` at most every TOKEN_REFRESH_SECONDS."""

    def __init__(self, load: Callable[[], str | None]) -> None:
        self._load = load
        self._value: str | None = None
        self._read_at = float("-inf")

    def __call__(self) -> str | None:
        if time.monotonic() - self._read_at > TOKEN_REFRESH_SECONDS:
            self._value = self._load()
            self._read_at = time.monotonic()
        return self._value


def in_cluster() -> Connection:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
    token_file = SERVICE_ACCOUNT_DIR / "token"
    return Connection(
        f"https://{host}:{port}", context, _Refreshing(lambda: token_file.read_text().strip())
    )


def _named(items: list[dict[str, Any]], name: str, kind: str, path: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(kind) or {})
    raise ValueError(f"{path}: no {kind} named {name!r}")


def from_kubeconfig(path: str) -> Connection:
    data = yaml.safe_load(Path(path).read_text()) or {}
    base = Path(path).resolve().parent
    context_name = data.get("current-context")
    if not context_name:
        raise ValueError(f"{path}: no current-context")
    context = _named(data.get("contexts", []), context_name, "context", path)
    cluster = _named(data.get("clusters", []), context["cluster"], "cluster", path)
    user = (
        _named(data.get("users", []), context["user"], "user", path) if context.get("user") else {}
    )
    if "exec" in user or "auth-provider" in user:
        return _via_official_client(path)

    def local(name: str) -> str:
        return str((base / name).resolve())

    verify: ssl.SSLContext | bool = True
    if cluster.get("insecure-skip-tls-verify"):
        verify = False
    elif str(cluster["server"]).startswith("https://"):
        context_ssl = ssl.create_default_context(
            cafile=local(cluster["certificate-authority"])
            if cluster.get("certificate-authority")
            else None,
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            if cluster.get("certificate-authority-data")
            else None,
        )
        _load_client_cert(context_ssl, user, local)
        verify = context_ssl

    token = user.get("token")
    token_file = user.get("tokenFile")
    if token_file:
        file_path = Path(local(token_file))
        return Connection(
            str(cluster["server"]), verify, _Refreshing(lambda: file_path.read_text().strip())
        )
    return Connection(str(cluster["server"]), verify, lambda: token)


def _load_client_cert(
    context: ssl.SSLContext, user: dict[str, Any], local: Callable[[str], str]
) -> None:
    if user.get("client-certificate"):
        context.load_cert_chain(
            local(user["client-certificate"]),
            local(user["client-key"]) if user.get("client-key") else None,
        )
    elif user.get("client-certificate-data"):
        # ssl can only load a certificate chain from files: write them to a private temp dir.
        with tempfile.TemporaryDirectory() as tmp:
            cert = Path(tmp) / "cert.pem"
            key = Path(tmp) / "key.pem"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user.get("client-key-data", "")))
            context.load_cert_chain(str(cert), str(key))


def _via_official_client(path: str) -> Connection:
    from kubernetes import client, config

    def load() -> client.Configuration:
        cfg = client.Configuration()
        config.load_kube_config(config_file=path, client_configuration=cfg)  # type: ignore[no-untyped-call]
        return cfg

    cfg = load()
    verify: ssl.SSLContext | bool = bool(cfg.verify_ssl)
    if cfg.verify_ssl and (cfg.ssl_ca_cert or cfg.cert_file):
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        verify = context

    def token() -> str | None:
        # Running the plugin again yields a fresh token (they expire, e.g. EKS after 15 min).
        value = load().auth_settings().get("BearerToken", {}).get("value")
        return str(value).removeprefix("Bearer ").strip() if value else None

    return Connection(str(cfg.host), verify, _Refreshing(token))


def connect(kubeconfig: str | None = None) -> Connection:
    """KUBECONFIG (or the given file, or ~/.kube/config), else the in-cluster account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        # Like kubectl, the first file of a KUBECONFIG list.
        return from_kubeconfig(path.split(os.pathsep)[0])
    default = Path.home() / ".kube" / "config"
    if default.exists():
        return from_kubeconfig(str(default))
    if (SERVICE_ACCOUNT_DIR / "token").exists():
        return in_cluster()
    raise RuntimeError("no Kubernetes config: set KUBECONFIG or run in a cluster")
