"""The FastAPI application: the /v1 router behind authentication, health, readiness and
metrics outside it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llmbatch.gateway import routes_batches, routes_extras, routes_files
from llmbatch.gateway.auth import authenticate
from llmbatch.gateway.bodylimit import BodyLimitMiddleware
from llmbatch.gateway.config import GatewayConfig
from llmbatch.gateway.errors import install_error_handlers
from llmbatch.gateway.kube import KubeClient
from llmbatch.gateway.notifier import Notifier
from llmbatch.gateway.observability import ObservabilityMiddleware
from llmbatch.gateway.periodic import Periodic
from llmbatch.gateway.state import Gateway, GatewayDep
from llmbatch.gateway.sweeper import sweep_once
from llmbatch.storage import ObjectStore


def create_app(
    config: GatewayConfig,
    kube: KubeClient,
    store: ObjectStore,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    gateway = Gateway(config=config, kube=kube, store=store, clock=clock)
    notifier = Notifier(gateway)
    background: list[Periodic] = []
    if config.expiry.enabled:
        interval = config.expiry.sweep_interval_seconds
        background.append(Periodic("expiry-sweeper", lambda: sweep_once(gateway), interval))
    if config.webhooks.enabled:
        background.append(
            Periodic("webhook-notifier", notifier.run_once, config.webhooks.interval_seconds)
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.watch_batch_jobs:
            gateway.jobs.start()
        for task in background:
            task.start()
        try:
            yield
        finally:
            for task in background:
                await task.stop()
            await notifier.aclose()
            await gateway.jobs.stop()
            await kube.aclose()

    app = FastAPI(
        title="llmbatch gateway",
        version="v1",
        description="OpenAI-compatible Files and Batches API over BatchJobs.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.notifier = notifier
    install_error_handlers(app)

    # Every /v1 route, present and future, goes through authentication and the rate limit.
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])
    v1.include_router(routes_files.router)
    # validate and cost-estimate before /batches/{batch_id} so their paths win.
    v1.include_router(routes_extras.router)
    v1.include_router(routes_batches.router)
    app.include_router(v1)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", include_in_schema=False)
    async def ready(gw: GatewayDep) -> Response:
        checks: dict[str, Any] = {}
        try:
            await gw.kube.ping()
            checks["kubernetes"] = "ok"
        except Exception as exc:
            checks["kubernetes"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
        try:
            # Listing the (maybe empty) prefix proves the bucket exists and is readable.
            probe = gw.config.storage.uri("tenants") + "/"
            await to_thread.run_sync(lambda: next(iter(gw.store.list(probe)), None))
            checks["storage"] = "ok"
        except Exception as exc:
            checks["storage"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
        ok = all(value == "ok" for value in checks.values())
        # Informational: without the watch, reads still work (from the API server).
        cache = "watching" if gw.jobs.live else "off"
        return JSONResponse(
            {"status": "ready" if ok else "unavailable", "checks": checks, "batchJobCache": cache},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimitMiddleware, max_bytes=config.limits.max_json_bytes)
    # Added last, so outermost: it also sees the answers of the body limit.
    app.add_middleware(ObservabilityMiddleware, metrics=gateway.metrics)
    return app
