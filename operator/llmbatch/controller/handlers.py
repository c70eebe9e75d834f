"""Kopf handler registrations, and nothing else: bodies live in ``handle_*`` modules.

``kopf run -m llmbatch.controller`` and ``llmbatch operator`` both load this module.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from llmbatch.api.gvk import GROUP, PLURAL, VERSION
from llmbatch.controller import metrics
from llmbatch.controller.config import ANNOTATION_PREFIX, FINALIZER, active
from llmbatch.controller.handle_reconcile import batchjob_daemon
from llmbatch.controller.handle_watch import needs_daemon, on_batchjob_event, on_job_event
from llmbatch.controller.kube import KubeApi
from llmbatch.controller.names import MANAGED_BY, MANAGED_BY_LABEL
from llmbatch.controller.runtime import Runtime, get_runtime, set_runtime


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    config = active()
    # Kopf's bookkeeping under our prefix in annotations; the status schema stays ours.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # Per-object log lines stay in the log; only handler failures become Events. The
    # lifecycle Events are posted explicitly after each successful status write.
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    set_runtime(Runtime(api=KubeApi(), config=config))
    metrics.serve(config.metrics_port)


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    try:
        get_runtime().api.close()
    except RuntimeError:
        return
    set_runtime(None)


@kopf.on.probe(id="batchjobs")
def probe(**_: Any) -> int:
    """Liveness detail: how many BatchJobs have a running daemon."""
    return len(get_runtime().wakers.events)


def _needs_daemon(body: kopf.Body, **_: Any) -> bool:
    return needs_daemon(body)


@kopf.daemon(GROUP, VERSION, PLURAL, id="reconcile", when=_needs_daemon, cancellation_timeout=10.0)
async def reconcile(
    body: kopf.Body, uid: str | None, name: str | None, namespace: str | None, **_: Any
) -> None:
    await batchjob_daemon(body, uid, name, namespace)


@kopf.on.event(GROUP, VERSION, PLURAL)
def batchjob_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    on_batchjob_event(get_runtime().wakers, type, body)


@kopf.on.event("batch", "v1", "jobs", labels={MANAGED_BY_LABEL: MANAGED_BY})
def job_event(body: kopf.Body, **_: Any) -> None:
    on_job_event(get_runtime().wakers, body)
