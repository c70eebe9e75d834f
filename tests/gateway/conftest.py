"""A gateway served by uvicorn on 127.0.0.1 (a thread of the test process), over a moto S3
bucket and an in-memory Kubernetes API, with a clock the tests can move."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from llmbatch.gateway.app import create_app
from llmbatch.gateway.config import GatewayConfig
from llmbatch.gateway.keys import KeyStore
from llmbatch.gateway.state import Gateway
from llmbatch.storage import StorageSettings, get_store
from tests.fixtures.s3 import S3Server
from tests.gateway.memkube import MemKube

NAMESPACE = "default"
TINY_TIER_LIMIT = 3


class Clock:
    """Wall clock plus an offset the tests advance to cross rate-limit windows."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerThread:
    """uvicorn in a daemon thread; start() returns once it accepts connections."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_config(bucket: str, endpoint: str, **overrides: Any) -> GatewayConfig:
    data: dict[str, Any] = {
        "namespace": NAMESPACE,
        "storage": {
            "endpoint": endpoint,
            "region": "us-east-1",
            "bucket": bucket,
            "prefix": "gw",
            "secretRef": "llmbatch-s3",
        },
        "models": {
            "tiny-qwen": {
                "source": "/models/tiny-qwen",
                "engineArgs": {"max_model_len": 512},
                "parallelism": 2,
                "resources": {"gpu": 0, "cpu": "1"},
            },
        },
        "prices": {"tiny-qwen": {"input": 0.5, "output": 1.5}},
        "tiers": {
            "free": 100,
            "basic": 500,
            "premium": 2000,
            "enterprise": 10000,
            "tiny": TINY_TIER_LIMIT,
            "bench": 10_000_000,
        },
        "limits": {"maxFileBytes": 4 * 1024 * 1024},
        "auth": {"cacheSeconds": 0},
    }
    data.update(overrides)
    return GatewayConfig.model_validate(data)


@dataclass
class GatewayEnv:
    url: str
    config: GatewayConfig
    gateway: Gateway
    kube: MemKube
    clock: Clock
    s3: S3Server
    bucket: str
    settings: StorageSettings

    def key(self, tenant: str | None = None, tier: str = "enterprise") -> str:
        """A new API key (own event loop and client: the server's loop is another thread's)."""
        tenant = tenant or f"t-{uuid.uuid4().hex[:8]}"

        async def create() -> str:
            client = self.kube.client(NAMESPACE)
            try:
                _, key = await KeyStore(client, self.config.auth.keys_secret).create(tenant, tier)
                return key
            finally:
                await client.aclose()

        return asyncio.run(create())

    def keystore_call(self, action: Any) -> Any:
        async def run() -> Any:
            client = self.kube.client(NAMESPACE)
            try:
                return await action(KeyStore(client, self.config.auth.keys_secret))
            finally:
                await client.aclose()

        return asyncio.run(run())

    def http(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def batch_name(self, batch_id: str) -> str:
        return "batch-" + batch_id.removeprefix("batch_")


@pytest.fixture(scope="module")
def gateway_env(s3_server: S3Server) -> Iterator[GatewayEnv]:
    with serve_gateway(s3_server) as env:
        yield env


@contextlib.contextmanager
def serve_gateway(s3_server: S3Server, **overrides: Any) -> Iterator[GatewayEnv]:
    """A gateway on its own bucket, with config overrides (camelCase sections)."""
    from llmbatch.storage.s3client import build_client

    bucket = f"gw-{uuid.uuid4().hex[:12]}"
    build_client(s3_server.settings()).create_bucket(Bucket=bucket)
    config = make_config(bucket, s3_server.endpoint_url, **overrides)
    # Small parts keep the multipart path exercised with small test files.
    settings = s3_server.settings(part_size=5 * 1024 * 1024, backoff_base=0.02)
    store = get_store(f"s3://{bucket}/", settings)
    memkube = MemKube()
    clock = Clock()
    kube = memkube.client(NAMESPACE)
    app = create_app(config, kube, store, clock=clock)
    port = free_port()
    server = ServerThread(app, port)
    server.start()
    try:
        yield GatewayEnv(
            url=f"http://127.0.0.1:{port}",
            config=config,
            gateway=app.state.gateway,
            kube=memkube,
            clock=clock,
            s3=s3_server,
            bucket=bucket,
            settings=settings,
        )
    finally:
        server.stop()
