"""Extra shards through the reconcile pass (in-memory API, moto S3): a late batch gets its
extra Job, built and named as the scaling policy says; suspending the batch deletes it in the
foreground; a failed extra Job is a lost shard, reported, while the batch runs on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from llmbatch.api.documents import ShardProgress
from llmbatch.api.timefmt import format_time, rfc3339
from llmbatch.controller.handle_reconcile import BatchJobMemory, reconcile_once
from llmbatch.controller.handle_scaling import read_extra_runs
from llmbatch.controller.observation import read_batchjob
from llmbatch.controller.policy.scaling import ScalingSettings
from llmbatch.controller.runtime import Runtime
from tests.controller.fakeapi import FakeApi
from tests.controller.test_reconcile import events, finish_plan, world  # noqa: F401
from tests.fixtures.s3 import S3Server

World = tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]]


def answered(done: int, seconds_ago: float) -> ShardProgress:
    """Shard 0's progress document as it was ``seconds_ago``."""
    when = rfc3339(time.time() - seconds_ago)
    return ShardProgress(shard=0, completed=done, updated_at=when, started_at=when, attempt=1)


async def scaled_up(
    fakes: World, s3_server: S3Server
) -> tuple[FakeApi, Runtime, dict[str, Any], BatchJobMemory]:
    """A late batch (parallelism 1, maxParallelism 2) after the pass that added its shard."""
    api, runtime, make = fakes
    body = make(parallelism=1, maxParallelism=2, completionWindow="10m")
    body["metadata"]["creationTimestamp"] = format_time(datetime.now(UTC) - timedelta(minutes=5))
    memory = BatchJobMemory()
    await reconcile_once(body, memory, runtime)
    finish_plan(api, s3_server, body)
    await reconcile_once(body, memory, runtime)
    api.jobs["demo-run"]["status"] = {"active": 1}
    api.pods["demo-run"] = [{"metadata": {"labels": {}}, "status": {"phase": "Running"}}]
    # One request a minute: the plan's 18 take 18 minutes, 5 are left.
    memory.rates.observe([answered(0, 121), answered(1, 120), answered(3, 1)])
    await reconcile_once(body, memory, runtime)
    return api, runtime, body, memory


async def test_a_late_batch_gets_an_extra_job_and_suspend_deletes_it(
    world: World,  # noqa: F811
    s3_server: S3Server,
    events: list[tuple[str, str, str]],  # noqa: F811
) -> None:
    api, runtime, body, memory = await scaled_up(world, s3_server)
    status = api.batchjobs["demo"]["status"]
    assert status["shardCount"] == 2
    assert [(c["from"], c["to"], c["reason"]) for c in status["shardHistory"]] == [
        (1, 2, "ScaledUp")
    ]
    extra = api.jobs["demo-run-1"]
    assert extra["metadata"]["labels"] == api.jobs["demo-run"]["metadata"]["labels"]
    command = extra["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-4:] == ["--shard-index", "1", "--shard-count", "2"]
    assert [e for e in events if e[1] == "ScaledUp"], events

    body["spec"]["suspend"] = True
    body["metadata"]["generation"] = 2
    await reconcile_once(body, memory, runtime)
    assert "delete_job demo-run-1 (foreground)" in api.calls
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Suspended" and status["shardCount"] == 1
    assert status["shardHistory"][-1]["reason"] == "ShardsStopped"


async def test_a_failed_extra_job_is_a_lost_shard_and_the_batch_runs_on(
    world: World,  # noqa: F811
    s3_server: S3Server,
    events: list[tuple[str, str, str]],  # noqa: F811
) -> None:
    api, runtime, body, memory = await scaled_up(world, s3_server)
    assert api.batchjobs["demo"]["status"]["shardCount"] == 2
    # The extra shard spent its retries (what the Job controller writes then).
    api.jobs["demo-run-1"]["status"] = {
        "failedIndexes": "0",
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "x"}
        ],
    }
    api.pods["demo-run-1"] = [failed_pod(1), failed_pod(1)]
    await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Running" and status["shardCount"] == 1
    assert status["shardHistory"][-1]["reason"] == "ShardLost"
    [lost] = [e for e in events if e[1] == "ShardLost"]
    assert lost[0] == "Warning" and "demo-run-1" in lost[2]
    # Kept for kubectl logs; the run Job goes on.
    assert "demo-run-1" in api.jobs
    assert not [c for c in api.calls if c.startswith(("delete_job demo-run-1", "patch_job"))]


async def test_a_pass_reads_extra_jobs_being_deleted_and_the_operator_settings(
    world: World,  # noqa: F811
    s3_server: S3Server,
) -> None:
    api, runtime, body, _ = await scaled_up(world, s3_server)
    api.jobs["demo-run-1"]["metadata"]["deletionTimestamp"] = format_time(datetime.now(UTC))
    settings = ScalingSettings(interval=timedelta(seconds=5))
    runtime = replace(runtime, config=replace(runtime.config, scaling=settings))
    batch = {**body, "status": api.batchjobs["demo"]["status"]}
    obs = await read_extra_runs(runtime, "default", read_batchjob(batch, datetime.now(UTC)))
    assert [view.exists for view in obs.extra_runs] == [True]
    assert obs.extra_deleting == frozenset({1})
    assert obs.scaling.interval == timedelta(seconds=5)


def failed_pod(exit_code: int) -> dict[str, Any]:
    terminated = {"exitCode": exit_code}
    return {
        "metadata": {"labels": {"batch.kubernetes.io/job-completion-index": "0"}},
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": "runner", "state": {"terminated": terminated}}],
        },
    }
