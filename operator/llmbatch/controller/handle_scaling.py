"""The I/O side of extra shards (spec.maxParallelism): read their Jobs and pods for a pass,
feed the rate window, create and delete them as ``policy/elastic.py`` decided."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from llmbatch.api.documents import ShardProgress
from llmbatch.controller.actions import Action, CreateExtraRunJob, DeleteExtraRunJob
from llmbatch.controller.build_jobs import build_extra_run_job
from llmbatch.controller.jobview import JobView, view_job
from llmbatch.controller.names import extra_run_job_name
from llmbatch.controller.observation import Observation
from llmbatch.controller.runtime import Runtime
from llmbatch.controller.scaling_state import RateWindow


def extras_to_read(obs: Observation) -> int:
    """How many extra Jobs to read: up to the highest number that may exist. New shards take
    numbers up to the count they are created with (extra_shards.place), and a Job that has
    been read since is listed in status.shards; one more covers a creation whose status write
    went through but whose call did not."""
    spec = obs.spec
    if spec is None:
        return 0
    floor = spec.parallelism
    counted = max(0, (obs.status.shard_count or floor) - floor)
    listed = max((s.index - floor + 1 for s in obs.status.shards if s.index >= floor), default=0)
    known = max(counted, listed)
    if not spec.elastic and known == 0:
        return 0
    return min(known + 1, max(spec.shard_ceiling - floor, known))


async def read_extra_runs(runtime: Runtime, namespace: str, obs: Observation) -> Observation:
    """The extra Jobs and their pods, which of them are being deleted, and the operator's
    scaling settings, into the observation."""
    views: list[JobView] = []
    deleting: set[int] = set()
    for number in range(1, extras_to_read(obs) + 1):
        name = extra_run_job_name(obs.name, number)
        job = await runtime.api.get_job(namespace, name)
        view = view_job(job)
        if view.exists and not view.complete:
            view = view_job(job, await runtime.api.list_pods(namespace, name))
        if job and (job.get("metadata") or {}).get("deletionTimestamp"):
            deleting.add(number)
        views.append(view)
    return replace(
        obs,
        extra_runs=tuple(views),
        extra_deleting=frozenset(deleting),
        scaling=runtime.config.scaling,
    )


def with_rate(
    obs: Observation, rates: RateWindow, documents: Sequence[ShardProgress]
) -> Observation:
    """The per-shard rate over the window (as long as the operator's settings say), once the
    documents read this pass are in it."""
    if obs.spec is None or not obs.spec.elastic:
        return obs
    rates.window = obs.scaling.rate_window.total_seconds()
    rates.observe(documents)
    return replace(obs, shard_rate=rates.per_shard_rate(obs.now.timestamp()))


async def run_scaling_action(
    runtime: Runtime, batch: Mapping[str, Any], action: Action, now: datetime
) -> bool:
    """Carry out ``action`` if it is an extra-shard one; False otherwise."""
    meta = batch["metadata"]
    namespace = meta["namespace"]
    if isinstance(action, CreateExtraRunJob):
        job = build_extra_run_job(batch, runtime.config, now, action.number)
        await runtime.api.create_job(namespace, job)
        return True
    if isinstance(action, DeleteExtraRunJob):
        # Foreground: the Job stays until its pod is gone, so finalize (which waits for every
        # run Job) never starts while the removed shard still commits its chunk.
        name = extra_run_job_name(meta["name"], action.number)
        await runtime.api.delete_job(namespace, name, wait_for_pods=True)
        return True
    return False


def extra_job_names(batch: Mapping[str, Any]) -> list[str]:
    """The names of the extra shards this BatchJob has had (for the TTL's deletion): up to the
    highest shard count its status recorded, or the highest shard its summary lists."""
    spec, status = batch.get("spec") or {}, batch.get("status") or {}
    floor = int(spec.get("parallelism") or 1)
    counts = [int(status.get("shardCount") or floor)]
    counts += [int(change.get("to") or 0) for change in status.get("shardHistory") or []]
    counts += [int(shard.get("index") or 0) + 1 for shard in status.get("shards") or []]
    name = batch["metadata"]["name"]
    return [extra_run_job_name(name, n) for n in range(1, max(counts) - floor + 1)]
