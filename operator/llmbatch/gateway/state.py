"""What one gateway process holds: config and clients. Nothing here is authoritative state;
every replica reads the same Kubernetes objects and S3 prefix."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from llmbatch.gateway.config import GatewayConfig
from llmbatch.gateway.files import FileStore
from llmbatch.gateway.informer import BatchJobCache
from llmbatch.gateway.keys import KeyStore
from llmbatch.gateway.kube import KubeClient
from llmbatch.gateway.observability import Metrics
from llmbatch.gateway.ratelimit import RateLimiter
from llmbatch.gateway.webhooks import WebhookStore
from llmbatch.storage import ObjectStore


@dataclass
class Gateway:
    config: GatewayConfig
    kube: KubeClient
    store: ObjectStore
    # Wall clock (seconds since the epoch); tests move it to cross rate-limit windows, to
    # expire files and to reach the next webhook retry.
    clock: Callable[[], float] = time.time
    metrics: Metrics = field(default_factory=Metrics)
    files: FileStore = field(init=False)
    keys: KeyStore = field(init=False)
    limiter: RateLimiter = field(init=False)
    jobs: BatchJobCache = field(init=False)
    webhooks: WebhookStore = field(init=False)

    def __post_init__(self) -> None:
        self.files = FileStore(self.store, self.config.storage)
        self.keys = KeyStore(
            self.kube, self.config.auth.keys_secret, self.config.auth.cache_seconds
        )
        self.jobs = BatchJobCache(self.kube)
        self.webhooks = WebhookStore(self.kube, self.config.webhooks.secret)
        self.limiter = RateLimiter(
            self.kube, self.config.rate_limit.window_seconds, clock=lambda: self.clock()
        )


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI would run a plain function in its threadpool, a thread hop per request.
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
