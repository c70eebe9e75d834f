"""Reading a kubeconfig file: the current context's cluster, user and namespace.

Tokens, token files, client certificates and CAs (files or inline data) are read here directly;
only users that run an ``exec`` plugin or an ``auth-provider`` (EKS, GKE, OIDC) go through the
official ``kubernetes`` package, which knows those plugins but costs a process 10 MB more
memory, so it is imported only then.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llmbatch.kube.connection import Connection, RefreshingToken
from llmbatch.kube.errors import KubeError


def from_kubeconfig(path: str | Path) -> Connection:
    """The connection of the file's current context; KubeError (status 0) names what is
    missing."""
    data = _read(Path(path))
    context_name = data.get("current-context")
    if not context_name:
        raise KubeError(0, f"{path}: no current-context")
    context = _named(data.get("contexts"), context_name, "context", path)
    cluster = _named(data.get("clusters"), context.get("cluster"), "cluster", path)
    user = _named(data.get("users"), context["user"], "user", path) if context.get("user") else {}
    if not cluster.get("server"):
        raise KubeError(0, f"{path}: cluster {context.get('cluster')!r} names no server")
    namespace = str(context.get("namespace") or "default")
    if "exec" in user or "auth-provider" in user:
        return _via_official_client(str(path), namespace)
    base = Path(path).resolve().parent

    def local(name: str) -> str:
        return str((base / name).resolve())

    server = str(cluster["server"])
    verify = _verify(cluster, user, local) if server.startswith("https://") else True
    if user.get("tokenFile"):
        token_file = Path(local(user["tokenFile"]))
        token = RefreshingToken(lambda: token_file.read_text().strip())
        return Connection(server, verify, token, namespace)
    value = user.get("token")
    return Connection(server, verify, lambda: value, namespace)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KubeError(0, f"cannot read kubeconfig {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise KubeError(0, f"kubeconfig {path} is not a mapping")
    return data


def _named(items: Any, name: Any, kind: str, path: str | Path) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(kind) or {})
    raise KubeError(0, f"{path}: no {kind} named {name!r}")


def _verify(
    cluster: dict[str, Any], user: dict[str, Any], local: Callable[[str], str]
) -> ssl.SSLContext | bool:
    if cluster.get("insecure-skip-tls-verify"):
        return False
    ca_file = cluster.get("certificate-authority")
    ca_data = cluster.get("certificate-authority-data")
    context = ssl.create_default_context(
        cafile=local(ca_file) if ca_file else None,
        cadata=base64.b64decode(ca_data).decode() if ca_data else None,
    )
    _load_client_cert(context, user, local)
    return context


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


def _via_official_client(path: str, namespace: str) -> Connection:
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

    return Connection(str(cfg.host), verify, RefreshingToken(token), namespace)
