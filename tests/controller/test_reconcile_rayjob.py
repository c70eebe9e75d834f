"""The KubeRay form through the reconcile pass (in-memory API, moto S3): the RayJob is created
after the plan step and its name written first, no run Job is ever made, KubeRay's status is
read back each pass and mapped onto ours, cancel suspends the RayJob before finalize, and the
TTL deletes it. The test plays KubeRay's part by writing the RayJob's status."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from llmbatch.controller.handle_rayjob import NO_KUBERAY
from llmbatch.controller.handle_reconcile import BatchJobMemory, reconcile_once
from llmbatch.controller.runtime import Runtime
from tests.controller.factories import finalize_job
from tests.controller.fakeapi import FakeApi
from tests.controller.test_kuberay import LOG, ray_pod
from tests.controller.test_reconcile import events, finish_plan, world  # noqa: F401
from tests.fixtures.s3 import S3Server

World = tuple[FakeApi, Runtime, Callable[..., dict[str, Any]]]
RAY = {"backend": "ray", "ray": {"workers": 2}, "parallelism": 1}


def kuberay_says(api: FakeApi, deployment: str, job: str = "", **status: Any) -> None:
    api.rayjobs["demo-ray"]["status"] = {
        "jobDeploymentStatus": deployment,
        "jobStatus": job,
        **status,
    }


async def planned(
    fakes: World, s3_server: S3Server, **spec: Any
) -> tuple[FakeApi, Runtime, dict[str, Any], BatchJobMemory]:
    """A KubeRay-form batch (``RAY`` and ``spec``) validated, planned and its RayJob created
    (two passes). The body carries the status they wrote; the memory returned for the passes
    after is a new one, as after an operator restart."""
    api, runtime, make = fakes
    body = make(**RAY, **spec)
    memory = BatchJobMemory()
    await reconcile_once(body, memory, runtime)
    finish_plan(api, s3_server, body)
    await reconcile_once(body, memory, runtime)
    body["status"] = dict(api.batchjobs["demo"]["status"])
    return api, runtime, body, BatchJobMemory()


async def kuberay_runs(
    api: FakeApi, runtime: Runtime, body: dict[str, Any], memory: BatchJobMemory, workers: int
) -> None:
    """KubeRay says the RayJob runs, its head and ``workers`` worker pods up; a pass reads it."""
    kuberay_says(api, "Running", "RUNNING")
    api.labelled_pods = [ray_pod("ray-head"), *(ray_pod() for _ in range(workers))]
    await reconcile_once(body, memory, runtime)


async def test_the_rayjob_runs_the_batch_from_plan_to_finalize(
    world: World,  # noqa: F811
    s3_server: S3Server,
    events: list[tuple[str, str, str]],  # noqa: F811
) -> None:
    api, runtime, make = world
    body = make(**RAY)
    memory = BatchJobMemory()
    await reconcile_once(body, memory, runtime)
    assert "has_rayjob_api" in api.calls
    status = api.batchjobs["demo"]["status"]
    assert status["jobName"] == "demo-ray" and status["reason"] == "Planning"
    assert "demo-plan" in api.jobs and api.rayjobs == {}
    finish_plan(api, s3_server, body)
    await reconcile_once(body, memory, runtime)
    # After the plan: the RayJob, named in the status before it was created; no run Job.
    assert api.calls.index("patch_status") < api.calls.index("create_rayjob demo-ray")
    assert "demo-run" not in api.jobs
    rayjob = api.rayjobs["demo-ray"]
    assert rayjob["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    entrypoint = shlex.split(rayjob["spec"]["entrypoint"])
    assert entrypoint[:2] == ["llmbatch-runner", "run"]
    assert entrypoint[entrypoint.index("--ray-address") + 1] == "auto"
    assert entrypoint[entrypoint.index("--input") + 1] == body["spec"]["input"]
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == "r:1"
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Queued" and status["reason"] == "JobCreated"
    assert status["requestCounts"]["total"] == 20

    kuberay_says(api, "Initializing")
    await reconcile_once(body, memory, runtime)
    assert "Initializing" in api.batchjobs["demo"]["status"]["message"]
    await kuberay_runs(api, runtime, body, memory, workers=2)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Running" and status["reason"] == "PodsRunning"
    assert "list_labelled_pods {'llmbatch.io/batchjob': 'demo', 'llmbatch.io/role': 'ray'}" in (
        api.calls
    )
    assert not [call for call in api.calls if call.startswith("get_job demo-run")][1:]

    kuberay_says(api, "Complete", "SUCCEEDED")
    await reconcile_once(body, memory, runtime)
    assert api.batchjobs["demo"]["status"]["phase"] == "Finalizing"
    command = api.jobs["demo-finalize"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--reason") + 1] == "none"
    api.jobs["demo-finalize"]["status"] = finalize_job(complete=True)["status"]
    await reconcile_once(body, memory, runtime)
    assert api.batchjobs["demo"]["status"]["phase"] == "Succeeded"
    assert api.calls.count("create_rayjob demo-ray") == 1
    assert "demo-run" not in api.jobs


async def test_a_rayjob_deleted_while_running_is_created_again_without_leaving_running(
    world: World,  # noqa: F811
    s3_server: S3Server,
    events: list[tuple[str, str, str]],  # noqa: F811
) -> None:
    api, runtime, body, memory = await planned(world, s3_server)
    await kuberay_runs(api, runtime, body, memory, workers=2)
    assert api.batchjobs["demo"]["status"]["phase"] == "Running"
    del api.rayjobs["demo-ray"]
    api.labelled_pods = []
    events.clear()
    await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Running" and status["reason"] == "JobRecreated"
    assert "RayJob demo-ray" in status["message"]
    assert api.calls.count("create_rayjob demo-ray") == 2
    assert [e[:2] for e in events] == [("Warning", "JobRecreated")]
    assert "demo-run" not in api.jobs


async def test_without_kuberay_the_batch_fails_validation_saying_what_to_do(
    world: World,  # noqa: F811
) -> None:
    api, runtime, make = world
    api.kuberay = False
    body = make(**RAY)
    delay = await reconcile_once(body, BatchJobMemory(), runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "ValidationFailed"
    assert status["message"] == NO_KUBERAY
    assert api.jobs == {} and api.rayjobs == {}
    assert delay is None
    # The one-pod form does not ask.
    api.calls.clear()
    await reconcile_once(make(name="pod", backend="ray", parallelism=1), BatchJobMemory(), runtime)
    assert "has_rayjob_api" not in api.calls


async def test_a_failed_rayjob_fails_the_batch_with_its_message_in_status_and_event(
    world: World,  # noqa: F811
    s3_server: S3Server,
    events: list[tuple[str, str, str]],  # noqa: F811
) -> None:
    api, runtime, body, memory = await planned(world, s3_server)
    kuberay_says(
        api, "Failed", "FAILED", reason="AppFailed", message=LOG.format(code=1) + "OOM killed\n"
    )
    delay = await reconcile_once(body, memory, runtime)
    status = api.batchjobs["demo"]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "BackoffLimitExceeded"
    assert "AppFailed" in status["message"] and "OOM killed" in status["message"]
    warning = [e for e in events if e[0] == "Warning"]
    assert [e[1] for e in warning] == ["BackoffLimitExceeded"]
    assert "OOM killed" in warning[0][2]
    assert delay is None


async def test_cancel_suspends_the_rayjob_and_finalizes_once_kuberay_removed_the_cluster(
    world: World,  # noqa: F811
    s3_server: S3Server,
) -> None:
    api, runtime, body, memory = await planned(world, s3_server)
    await kuberay_runs(api, runtime, body, memory, workers=1)
    body["spec"]["cancel"] = True
    body["metadata"]["generation"] = 2
    await reconcile_once(body, memory, runtime)
    assert "patch_rayjob demo-ray {'spec': {'suspend': True}}" in api.calls
    assert api.batchjobs["demo"]["status"]["phase"] == "Cancelling"
    # KubeRay deletes the cluster: no finalize while its pods may still write.
    kuberay_says(api, "Suspending")
    await reconcile_once(body, memory, runtime)
    assert "demo-finalize" not in api.jobs
    kuberay_says(api, "Suspended")
    api.labelled_pods = []
    await reconcile_once(body, memory, runtime)
    command = api.jobs["demo-finalize"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--reason") + 1] == "cancelled"
    assert api.calls.count("patch_rayjob demo-ray {'spec': {'suspend': True}}") == 1


async def test_the_ttl_deletes_the_rayjob_with_the_jobs(
    world: World,  # noqa: F811
    s3_server: S3Server,
) -> None:
    api, runtime, body, memory = await planned(world, s3_server, ttlSecondsAfterFinished=0)
    kuberay_says(api, "Complete", "SUCCEEDED")
    await reconcile_once(body, memory, runtime)
    api.jobs["demo-finalize"]["status"] = finalize_job(complete=True)["status"]
    await reconcile_once(body, memory, runtime)
    assert api.batchjobs["demo"]["status"]["phase"] == "Succeeded"
    body["status"] = dict(api.batchjobs["demo"]["status"])
    await reconcile_once(body, memory, runtime)
    assert "delete_rayjob demo-ray" in api.calls
    assert api.rayjobs == {} and "demo-finalize" not in api.jobs
