"""batch/v1 Job semantics the operator relies on, through the `kubernetes` client. Kubernetes'
behaviour, so these also pass against a real cluster (LLMBATCH_E2E_KUBECONFIG) except where
marked sandbox_only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxInfo
from tests.sandbox.jobs.kube import (
    TIMEOUT_SCALE,
    Kube,
    condition,
    job_manifest,
    phase,
    terminated,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SLEEP = "import time; time.sleep(60)"
INDEX_EXIT = "import os, sys; sys.exit({codes}.get(int(os.environ['JOB_COMPLETION_INDEX']), 0))"


@pytest.fixture
def kube(kube_api_client: Any, sandbox: SandboxInfo) -> Iterator[Kube]:
    TIMEOUT_SCALE["value"] = 1.0 if sandbox.is_sandbox else 6.0
    helper = Kube(kube_api_client)
    helper.created: list[str] = []  # type: ignore[misc]
    yield helper
    for name in helper.created:  # type: ignore[attr-defined]
        helper.delete_job(name)


def create(kube: Kube, name: str, code: str, **spec: Any) -> dict[str, Any]:
    kube.created.append(name)  # type: ignore[attr-defined]
    return kube.create_job(job_manifest(name, code, **spec))


def finished(kube: Kube, name: str, kind: str, timeout: float = 30) -> dict[str, Any]:
    job = wait_for(
        lambda: condition(kube.job(name), kind) and kube.job(name), f"{name} {kind}", timeout
    )
    return job


def test_indexed_job_runs_every_index_once(kube: Kube) -> None:
    name = unique("indexed")
    code = (
        "import os; print('index=' + os.environ['JOB_COMPLETION_INDEX'] + "
        "' pod=' + os.environ['POD_NAME'])"
    )
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    created = create(
        kube,
        name,
        code,
        completionMode="Indexed",
        completions=3,
        parallelism=2,
        container={"env": env},
    )
    job = finished(kube, name, "Complete")
    status = job["status"]
    assert status["succeeded"] == 3
    assert status["completedIndexes"] == "0-2"
    assert status.get("failed", 0) == 0 and status.get("active", 0) == 0
    assert status["startTime"] and status["completionTime"]
    assert condition(job, "SuccessCriteriaMet")["reason"] == "CompletionsReached"  # type: ignore[index]
    pods = kube.job_pods(name)
    assert len(pods) == 3
    uid = created["metadata"]["uid"]
    seen = set()
    for pod in pods:
        meta = pod["metadata"]
        index = meta["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert meta["labels"]["batch.kubernetes.io/job-completion-index"] == index
        assert re.fullmatch(rf"{name}-{index}-[a-z0-9]{{5}}", meta["name"]), meta["name"]
        assert meta["labels"]["batch.kubernetes.io/controller-uid"] == uid
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", name, uid)
        assert owner["controller"] is True and owner["blockOwnerDeletion"] is True
        assert phase(pod) == "Succeeded"
        state = terminated(pod)
        assert state is not None and state["exitCode"] == 0 and state["reason"] == "Completed"
        assert state["startedAt"] and state["finishedAt"]
        assert kube.logs(meta["name"]).strip() == f"index={index} pod={meta['name']}"
        seen.add(index)
    assert seen == {"0", "1", "2"}


def test_parallelism_bounds_running_pods(kube: Kube) -> None:
    name = unique("parallel")
    create(kube, name, SLEEP, completions=4, parallelism=2)
    wait_for(lambda: (kube.job(name) or {}).get("status", {}).get("active") == 2, "2 active")
    wait_for(
        lambda: all(phase(p) == "Running" for p in kube.job_pods(name)) and kube.job_pods(name),
        "pods running",
    )
    assert len(kube.job_pods(name)) == 2
    wait_for(lambda: (kube.job(name) or {}).get("status", {}).get("ready") == 2, "2 ready")


def test_backoff_limit_fails_the_job(kube: Kube) -> None:
    name = unique("backoff")
    create(kube, name, "import sys; sys.exit(3)", backoffLimit=1)
    job = finished(kube, name, "Failed", timeout=45)
    assert job["status"]["failed"] == 2
    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert condition(job, "FailureTarget") is not None
    assert condition(job, "Complete") is None and "completionTime" not in job["status"]
    pods = kube.job_pods(name)
    assert len(pods) == 2 and all(phase(p) == "Failed" for p in pods)
    assert {terminated(p)["exitCode"] for p in pods} == {3}  # type: ignore[index]
    assert {terminated(p)["reason"] for p in pods} == {"Error"}  # type: ignore[index]


def test_backoff_limit_per_index_marks_failed_indexes(kube: Kube) -> None:
    name = unique("perindex")
    create(
        kube,
        name,
        INDEX_EXIT.format(codes={1: 5}),
        completionMode="Indexed",
        completions=3,
        parallelism=3,
        backoffLimitPerIndex=1,
    )
    job = finished(kube, name, "Failed", timeout=45)
    status = job["status"]
    assert status["failedIndexes"] == "1"
    assert status["completedIndexes"] == "0,2"
    assert status["failed"] == 2 and status["succeeded"] == 2
    assert condition(job, "Failed")["reason"] == "FailedIndexes"  # type: ignore[index]
    retried = [
        p
        for p in kube.job_pods(name)
        if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
    ]
    counts = sorted(
        p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] for p in retried
    )
    assert counts == ["0", "1"]


def test_pod_failure_policy_fail_job(kube: Kube) -> None:
    name = unique("failjob")
    code = (
        "import os, sys, time\n"
        "if os.environ['JOB_COMPLETION_INDEX'] == '1': sys.exit(42)\n"
        "time.sleep(60)"
    )
    policy = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]},
            }
        ]
    }
    create(
        kube,
        name,
        code,
        completionMode="Indexed",
        completions=2,
        parallelism=2,
        backoffLimit=6,
        podFailurePolicy=policy,
    )
    job = finished(kube, name, "Failed")
    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "PodFailurePolicy"
    assert "exit code 42" in failed["message"] and "FailJob rule at index 0" in failed["message"]
    # The sleeping index was stopped, not left running.
    assert not [p for p in kube.job_pods(name) if phase(p) in ("Running", "Pending")]


def test_pod_failure_policy_fail_index(kube: Kube) -> None:
    name = unique("failindex")
    policy = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}}]}
    create(
        kube,
        name,
        INDEX_EXIT.format(codes={0: 7}),
        completionMode="Indexed",
        completions=2,
        parallelism=2,
        backoffLimitPerIndex=3,
        podFailurePolicy=policy,
    )
    job = finished(kube, name, "Failed")
    assert job["status"]["failedIndexes"] == "0" and job["status"]["failed"] == 1
    assert job["status"]["completedIndexes"] == "1"
    assert len(kube.job_pods(name)) == 2  # index 0 was not retried


def test_pod_failure_policy_ignore_and_count(kube: Kube) -> None:
    name = unique("ignore")
    policy = {
        "rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [9, 137, 143]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [9, 137, 143]}},
        ]
    }
    create(
        kube,
        name,
        INDEX_EXIT.format(codes={0: 9, 1: 4}),
        completionMode="Indexed",
        completions=2,
        parallelism=2,
        backoffLimit=0,
        podFailurePolicy=policy,
    )
    job = finished(kube, name, "Failed")
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    # Index 0's exits (9) are ignored, like the SIGTERM/SIGKILL ends (143/137) of a replacement
    # of index 0 stopped when the Job failed: only index 1's failure counts.
    assert job["status"]["failed"] == 1


@pytest.mark.sandbox_only
def test_disruption_target_ignored_by_policy(kube: Kube, sandbox: SandboxInfo) -> None:
    if not sandbox.is_sandbox:
        pytest.skip("preemption on request is a sandbox-only control")
    name = unique("preempt")
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    create(kube, name, SLEEP, backoffLimit=0, podFailurePolicy=policy)
    first = wait_for(
        lambda: [p for p in kube.job_pods(name) if phase(p) == "Running"], "a running pod"
    )[0]["metadata"]["name"]
    kube.annotate_pod(first, {"sandbox.llmbatch.io/preempt": "true"})
    replacement = wait_for(
        lambda: [
            p
            for p in kube.job_pods(name)
            if p["metadata"]["name"] != first and phase(p) == "Running"
        ],
        "a replacement pod",
    )
    assert replacement
    job = kube.job(name)
    assert job is not None and not job["status"].get("failed")
    assert condition(job, "Failed") is None


def test_active_deadline_seconds(kube: Kube) -> None:
    name = unique("deadline")
    create(kube, name, SLEEP, activeDeadlineSeconds=2)
    job = finished(kube, name, "Failed", timeout=20)
    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded"
    assert not job["status"].get("active")
    assert not [p for p in kube.job_pods(name) if phase(p) in ("Running", "Pending")]


def test_suspend_deletes_pods_and_resume_recreates_them(kube: Kube) -> None:
    name = unique("suspend")
    create(kube, name, SLEEP)
    wait_for(lambda: [p for p in kube.job_pods(name) if phase(p) == "Running"], "running pod")
    first_start = kube.job(name)["status"]["startTime"]  # type: ignore[index]
    kube.patch_job(name, {"spec": {"suspend": True}})
    job = finished(kube, name, "Suspended")
    assert condition(job, "Suspended")["reason"] == "JobSuspended"  # type: ignore[index]
    wait_for(lambda: not kube.job_pods(name), "pods of the suspended job gone", timeout=20)
    job = kube.job(name)
    assert job is not None and not job["status"].get("active") and not job["status"].get("failed")
    kube.patch_job(name, {"spec": {"suspend": False}})
    wait_for(lambda: [p for p in kube.job_pods(name) if phase(p) == "Running"], "pod again")
    job = kube.job(name)
    assert job is not None
    suspended = next(c for c in job["status"]["conditions"] if c["type"] == "Suspended")
    assert (suspended["status"], suspended["reason"]) == ("False", "JobResumed")
    assert job["status"]["startTime"] >= first_start


def test_job_created_suspended_starts_nothing(kube: Kube) -> None:
    name = unique("created-suspended")
    create(kube, name, "print('hi')", suspend=True)
    job = finished(kube, name, "Suspended")
    assert "startTime" not in job["status"]
    assert kube.job_pods(name) == []


def test_ttl_seconds_after_finished_deletes_the_job(kube: Kube) -> None:
    name = unique("ttl")
    create(kube, name, "print('done')", ttlSecondsAfterFinished=1)
    finished(kube, name, "Complete")
    wait_for(lambda: kube.job(name) is None, "the job deleted after its TTL", timeout=20)
    wait_for(lambda: not kube.job_pods(name), "its pods deleted", timeout=20)


def test_deleting_a_job_stops_its_pods(kube: Kube) -> None:
    name = unique("delete")
    create(kube, name, SLEEP, parallelism=2, completions=2)
    wait_for(
        lambda: len([p for p in kube.job_pods(name) if phase(p) == "Running"]) == 2, "2 running"
    )
    kube.delete_job(name)
    wait_for(lambda: not kube.job_pods(name), "pods gone with their job", timeout=20)


def test_lowering_parallelism_stops_pods_without_failures(kube: Kube) -> None:
    name = unique("scale")
    create(kube, name, SLEEP, completions=3, parallelism=3)
    wait_for(lambda: (kube.job(name) or {}).get("status", {}).get("active") == 3, "3 active")
    kube.patch_job(name, {"spec": {"parallelism": 1}})
    wait_for(
        lambda: len([p for p in kube.job_pods(name) if phase(p) == "Running"]) == 1,
        "one running pod",
        timeout=20,
    )
    job = kube.job(name)
    assert job is not None and not job["status"].get("failed")


def test_orphaned_pods_keep_running_and_lose_the_tracking_finalizer(kube: Kube) -> None:
    name = unique("orphan")
    create(kube, name, SLEEP)
    pod = wait_for(
        lambda: [p for p in kube.job_pods(name) if phase(p) == "Running"], "a running pod"
    )[0]
    assert "batch.kubernetes.io/job-tracking" in pod["metadata"]["finalizers"]
    kube.batch.delete_namespaced_job(name, "default", propagation_policy="Orphan")
    wait_for(lambda: kube.job(name) is None, "the job gone")
    released = wait_for(
        lambda: (
            (p := kube.pod(pod["metadata"]["name"]))
            and not (p["metadata"].get("finalizers") or [])
            and p
        ),
        "the finalizer removed",
    )
    assert phase(released) == "Running" and not released["metadata"].get("ownerReferences")
    kube.delete_pod(pod["metadata"]["name"], grace=0)


@pytest.mark.sandbox_only
def test_controllers_survive_closed_watches_and_expired_history(
    kube: Kube, sandbox: SandboxInfo
) -> None:
    """The Job controller and kubelet resume their watches (from their last resourceVersion,
    or by listing again after 410 Gone) and keep working."""
    if not sandbox.is_sandbox:
        pytest.skip("uses the emulator's fault hooks")
    import urllib.request

    def post(path: str) -> None:
        request = urllib.request.Request(sandbox.api_url + path, data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status < 300

    post("/sandbox/expire-history")
    post("/sandbox/close-watches")
    name = unique("rewatch")
    create(kube, name, "print('after the faults')", completionMode="Indexed", completions=2)
    job = finished(kube, name, "Complete")
    assert job["status"]["completedIndexes"] == "0-1"


def test_job_events(kube: Kube) -> None:
    name = unique("events")
    create(kube, name, "print('hi')")
    finished(kube, name, "Complete")

    def reasons() -> set[str]:
        events = kube.core.list_namespaced_event("default").items
        return {e.reason for e in events if e.involved_object.name == name}

    wait_for(lambda: {"SuccessfulCreate", "Completed"} <= reasons(), "job events")


def test_on_failure_restarts_in_place_and_counts_towards_the_backoff_limit(kube: Kube) -> None:
    name = unique("onfailure")
    create(
        kube,
        name,
        "import sys; sys.exit(1)",
        backoffLimit=1,
        pod_spec={"restartPolicy": "OnFailure"},
    )
    job = finished(kube, name, "Failed", timeout=45)
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    pods = kube.job_pods(name)
    assert len(pods) <= 1  # restarted in place, not replaced


def test_on_failure_pod_restarts_until_it_succeeds(kube: Kube) -> None:
    """restartCount and lastState of a container restarted in place."""
    name = unique("restart")
    # The attempt counter survives a container restart in an emptyDir (on the sandbox, which
    # ignores volumes, in the same host directory).
    scratch = "/tmp/llmbatch-scratch"
    code = (
        f"import os, sys; os.makedirs('{scratch}', exist_ok=True); "
        f"p = '{scratch}/' + os.environ['HOSTNAME'] + '-tries'; "
        "n = int(open(p).read()) if os.path.exists(p) else 0; open(p, 'w').write(str(n + 1)); "
        "sys.exit(0 if n >= 1 else 2)"
    )
    create(
        kube,
        name,
        code,
        pod_spec={"restartPolicy": "OnFailure", "volumes": [{"name": "s", "emptyDir": {}}]},
        container={"volumeMounts": [{"name": "s", "mountPath": scratch}]},
    )
    finished(kube, name, "Complete", timeout=45)
    (pod,) = kube.job_pods(name)
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert cs["state"]["terminated"]["exitCode"] == 0


def test_max_failed_indexes_stops_the_other_indexes(kube: Kube) -> None:
    """The operator's shape: one shard that cannot finish fails the Job at once."""
    name = unique("maxfailed")
    code = (
        "import os, sys, time\n"
        "if os.environ['JOB_COMPLETION_INDEX'] == '0': sys.exit(3)\n"
        "time.sleep(60)"
    )
    create(
        kube,
        name,
        code,
        completionMode="Indexed",
        completions=2,
        parallelism=2,
        backoffLimitPerIndex=0,
        maxFailedIndexes=0,
    )
    job = finished(kube, name, "Failed")
    assert condition(job, "Failed")["reason"] == "MaxFailedIndexesExceeded"  # type: ignore[index]
    assert job["status"]["failedIndexes"].startswith("0")
    assert not [p for p in kube.job_pods(name) if phase(p) in ("Running", "Pending")]
