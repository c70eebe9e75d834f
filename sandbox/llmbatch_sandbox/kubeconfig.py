"""The kubeconfig that points kubectl, the operator and the Python client at the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONTEXT = "llmbatch-sandbox"
DEFAULT_PATH = Path(".sandbox") / "kubeconfig"


def build_kubeconfig(server_url: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": CONTEXT, "cluster": {"server": server_url}}],
        # The emulator does no authentication; a token keeps clients that insist on
        # credentials (kopf's login) content.
        "users": [{"name": CONTEXT, "user": {"token": "sandbox"}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
    }


def write_kubeconfig(path: Path, server_url: str) -> Path:
    """Write the file atomically (a reader never sees half of it); returns its absolute path."""
    path = path.expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(build_kubeconfig(server_url), sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path
