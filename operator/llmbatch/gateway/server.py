"""Wiring for ``llmbatch gateway``: config file -> Kubernetes client, object store, app."""

from __future__ import annotations

import asyncio
import base64
import json
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
        part_size=config.storage.part_size,
        write_concurrency=config.storage.write_concurrency,
    )


def build_app(config: GatewayConfig) -> FastAPI:
    settings = storage_settings(config)
    store = get_store(config.storage.uri(), settings)
    kube = KubeClient.from_environment(config.namespace)
    return create_app(config, kube, store)


class JsonFormatter(logging.Formatter):
    """Every record as one JSON object; access records are JSON already and pass through."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "llmbatch.gateway.access":
            return record.getMessage()
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # One line per Kubernetes or S3 call would drown the access log.
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
