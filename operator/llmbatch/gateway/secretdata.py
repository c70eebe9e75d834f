"""Read-modify-write of one Secret's ``data`` (the keys and the webhook endpoints live in one
Secret each): the resourceVersion is the precondition, a lost race (409) reads and tries again,
a missing Secret is created."""

from __future__ import annotations

from collections.abc import Callable

from llmbatch.gateway.kube import KubeClient
from llmbatch.kube import Conflict, NotFound

Change = Callable[[dict[str, str]], dict[str, str]]
_TRIES = 20


async def update_secret_data(kube: KubeClient, name: str, change: Change) -> None:
    for _ in range(_TRIES):
        try:
            secret = await kube.get("secrets", name)
        except NotFound:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": name,
                    "labels": {
                        "app.kubernetes.io/part-of": "llmbatch",
                        "app.kubernetes.io/component": "gateway",
                    },
                },
                "data": change({}),
            }
            try:
                await kube.create("secrets", body)
                return
            except Conflict:
                continue
        secret["data"] = change(dict(secret.get("data") or {}))
        try:
            await kube.replace("secrets", name, secret)
            return
        except Conflict:
            continue
    raise RuntimeError(f"could not update Secret {name}: too many conflicts")
