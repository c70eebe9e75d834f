"""Deletes expired files: uploads (content, meta.json, then their expiry marker) and the output
and error files of batches created with ``output_expires_after``.

Every replica may sweep at the same time. Each step is a delete (deleting what is already
gone is success) or a merge patch writing the same value, and the step that records the work
as done comes last: the expiry marker is deleted after the file's objects, the BatchJob's
``outputs-deleted-at`` annotation is set after its objects are gone. Two sweepers at once, or
one that crashed half-way, leave the state the same as one sweeper that finished. File ids are
never reused, so a late delete cannot hit a newer file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import to_thread

from llmbatch.gateway import expiry
from llmbatch.gateway.batches import output_created_at, phase_of
from llmbatch.gateway.files import FileStore
from llmbatch.gateway.informer import MANAGED_SELECTOR
from llmbatch.gateway.lookup import result_uri
from llmbatch.kube import NotFound

if TYPE_CHECKING:
    from llmbatch.gateway.state import Gateway

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swept:
    files: int
    batches: int


def sweep_files(files: FileStore, now: float) -> int:
    """Delete every upload whose expiry marker is due; markers list in time order, so the walk
    stops at the first one in the future. Blocking (object storage calls)."""
    prefix = files.expiry_prefix()
    swept = 0
    for info in files.store.list(prefix):
        stamp, _, rest = info.uri[len(prefix) :].partition("/")
        tenant, _, file_id = rest.partition("/")
        if stamp.isdigit() and int(stamp) > now:
            break
        if tenant and file_id:
            files.delete(tenant, file_id)
        files.store.delete(info.uri)
        swept += 1
    return swept


def _outputs_due(job: dict[str, Any], now: float) -> bool:
    annotations = job["metadata"].get("annotations") or {}
    if expiry.OUTPUTS_DELETED_ANNOTATION in annotations:
        return False
    phase = phase_of(job)
    if phase is None or not phase.is_terminal():
        return False
    return expiry.is_expired(expiry.output_expires_at(job, output_created_at(job)), now)


async def sweep_outputs(gateway: Gateway, now: float) -> int:
    """Delete the output and error files of gateway batches whose output expiry passed."""
    swept = 0
    for job in await gateway.jobs.list(MANAGED_SELECTOR):
        if not _outputs_due(job, now):
            continue
        for kind in ("output", "errors"):
            uri = result_uri(job, kind)
            if uri is not None:
                await to_thread.run_sync(gateway.store.delete, uri)
        patch = {"metadata": {"annotations": {expiry.OUTPUTS_DELETED_ANNOTATION: str(int(now))}}}
        try:
            gateway.jobs.remember(await gateway.kube.patch_batchjob(job["metadata"]["name"], patch))
        except NotFound:
            continue  # deleted meanwhile: nothing left to record
        swept += 1
    return swept


async def sweep_once(gateway: Gateway) -> Swept:
    now = gateway.clock()
    files = await to_thread.run_sync(sweep_files, gateway.files, now)
    batches = await sweep_outputs(gateway, now)
    if files or batches:
        log.info("expiry sweep: %d files, outputs of %d batches deleted", files, batches)
    return Swept(files=files, batches=batches)
