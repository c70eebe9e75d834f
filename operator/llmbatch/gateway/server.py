"""Wiring for ``llmbatch gateway``: config file -> Kubernetes client, object store, app."""

from __future__ import annotations

import asyncio
import base64
import logging
import sys

from fastapi import FastAPI

from llmbatch.gateway.app import create_app
from llmbatch.gateway.config import GatewayConfig
from llmbatch.gateway.kube import KubeClient
from llmbatch.storage import StorageSettings, get_store


async def _read_credentials(namespace: str, secret: str) -> tuple[str | None, str | None]:
    kube = KubeClient.from_environment(namespace)
    try:
        data = (await kube.get("secrets", secret)).get("data") or {}
    finally:
        await kube.aclose()

    def field(name: str) -> str | None:
        value = data.get(name)
        return base64.b64decode(value).decode() if value else None

    return field("AWS_ACCESS_KEY_ID"), field("AWS_SECRET_ACCESS_KEY")


def storage_settings(config: GatewayConfig) -> StorageSettings:
    """S3 settings: endpoint and region from the config; credentials from storage.secretRef
    (the Secret the BatchJobs also use), else the standard AWS environment variables."""
    env = StorageSettings.from_env()
    access, secret = env.access_key_id, env.secret_access_key
    if config.storage.secret_ref:
        access, secret = asyncio.run(_read_credentials(config.namespace, config.storage.secret_ref))
    return StorageSettings(
        endpoint_url=config.storage.endpoint or env.endpoint_url,
        region=config.storage.region or env.region,
        access_key_id=access,
        secret_access_key=secret,
    )


def build_app(config: GatewayConfig) -> FastAPI:
    settings = storage_settings(config)
    store = get_store(config.storage.uri(), settings)
    kube = KubeClient.from_environment(config.namespace)
    return create_app(config, kube, store)


def configure_logging() -> None:
    """Access lines are already JSON; other records are wrapped so the stream stays JSON."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            '{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","message":%(message)r}'
        )
    )
    access = logging.getLogger("llmbatch.gateway.access")
    access.handlers[:] = [logging.StreamHandler(sys.stdout)]
    access.propagate = False
    access.setLevel(logging.INFO)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
