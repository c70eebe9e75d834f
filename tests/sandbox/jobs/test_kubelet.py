"""The kubelet: pods' containers as processes, with Kubernetes' env, logs, status, deletion
and scheduling behaviour. Sandbox-only controls (GPU slots, preempt/kill annotations, the
inherited VLLM_* env) are marked and skipped against a real cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxInfo
from tests.sandbox.jobs.kube import (
    NS,
    TIMEOUT_SCALE,
    Kube,
    container,
    phase,
    terminated,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SLEEP = "import time; print('started', flush=True); time.sleep(60)"


@pytest.fixture
def kube(kube_api_client: Any, sandbox: SandboxInfo) -> Iterator[Kube]:
    TIMEOUT_SCALE["value"] = 1.0 if sandbox.is_sandbox else 6.0
    helper = Kube(kube_api_client)
    helper.created: list[str] = []  # type: ignore[misc]
    yield helper
    for name in helper.created:  # type: ignore[attr-defined]
        helper.delete_pod(name, grace=0)


def make_pod(kube: Kube, code: str, grace: int = 2, **extra: Any) -> str:
    name = unique(extra.pop("prefix", "pod"))
    spec_extra = extra.pop("spec", {})
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"app": "kubelet-test", "tier": "x"},
            "annotations": {"note": "hello"},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": grace,
            "containers": [container(code, **extra)],
            **spec_extra,
        },
    }
    kube.created.append(name)  # type: ignore[attr-defined]
    kube.create_pod(manifest)
    return name


def ended(kube: Kube, name: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(
        lambda: (p := kube.pod(name)) and phase(p) in ("Succeeded", "Failed") and p,
        f"pod {name} to end",
        timeout,
    )


def running(kube: Kube, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (p := kube.pod(name)) and phase(p) == "Running" and p, f"pod {name} running"
    )


@pytest.fixture
def env_sources(kube: Kube) -> Iterator[None]:
    core = kube.core
    core.create_namespaced_secret(
        NS, {"metadata": {"name": "kubelet-test-secret"}, "stringData": {"token": "s3cr3t"}}
    )
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "kubelet-test-cm"}, "data": {"mode": "fast", "level": "3"}}
    )
    yield
    core.delete_namespaced_secret("kubelet-test-secret", NS)
    core.delete_namespaced_config_map("kubelet-test-cm", NS)


def test_env_working_dir_and_logs(kube: Kube, sandbox: SandboxInfo, env_sources: None) -> None:
    code = (
        "import json, os; keys = ['TOKEN', 'MODE', 'NAME', 'NAMESPACE', 'TIER', 'NOTE', "
        "'CFG_level', 'CFG_mode', 'LITERAL', 'OPTIONAL', 'VLLM_CPU_KVCACHE_SPACE']; "
        "print(json.dumps({'env': {k: os.environ.get(k) for k in keys}, 'cwd': os.getcwd()}))"
    )
    env = [
        {
            "name": "TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "kubelet-test-secret", "key": "token"}},
        },
        {
            "name": "MODE",
            "valueFrom": {"configMapKeyRef": {"name": "kubelet-test-cm", "key": "mode"}},
        },
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
        {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
        {"name": "LITERAL", "value": "$(MODE)-$(NAME)"},
        {
            "name": "OPTIONAL",
            "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
        },
    ]
    env_from = [{"configMapRef": {"name": "kubelet-test-cm"}, "prefix": "CFG_"}]
    name = make_pod(kube, code, env=env, envFrom=env_from, workingDir="/tmp/llmbatch-kubelet-wd")
    pod = ended(kube, name)
    assert phase(pod) == "Succeeded", pod["status"]
    report = json.loads(kube.logs(name))
    expected = {
        "TOKEN": "s3cr3t",
        "MODE": "fast",
        "NAME": name,
        "NAMESPACE": NS,
        "TIER": "x",
        "NOTE": "hello",
        "CFG_level": "3",
        "CFG_mode": "fast",
        "LITERAL": f"fast-{name}",
        "OPTIONAL": None,
    }
    assert {k: report["env"][k] for k in expected} == expected
    assert report["cwd"] == "/tmp/llmbatch-kubelet-wd"
    if sandbox.is_sandbox:  # the runner image sets these on a cluster
        assert report["env"]["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_stdout_and_stderr_both_reach_the_log(kube: Kube) -> None:
    name = make_pod(kube, "import sys; print('out', flush=True); print('err', file=sys.stderr)")
    ended(kube, name)
    assert set(kube.logs(name).split()) == {"out", "err"}


def test_status_through_the_life_of_a_pod(kube: Kube) -> None:
    name = make_pod(kube, SLEEP)
    pod = running(kube, name)
    status = pod["status"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["PodScheduled"] == "True" and conditions["Ready"] == "True"
    (cs,) = status["containerStatuses"]
    assert cs["ready"] is True and cs["state"]["running"]["startedAt"]
    assert status["startTime"] and status["podIP"]
    assert pod["spec"]["nodeName"]


def test_failing_command_reports_its_exit_code(kube: Kube) -> None:
    name = make_pod(kube, "import sys; sys.exit(3)")
    pod = ended(kube, name)
    assert phase(pod) == "Failed"
    state = terminated(pod)
    assert state is not None and (state["exitCode"], state["reason"]) == (3, "Error")
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"


def test_missing_executable_fails_the_pod(kube: Kube) -> None:
    name = unique("nocmd")
    kube.created.append(name)  # type: ignore[attr-defined]
    kube.create_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": "python:3.12-slim", "command": ["no-such-cmd-xyz"]}
                ],
            },
        }
    )
    pod = ended(kube, name)
    assert phase(pod) == "Failed"
    state = terminated(pod)
    assert state is not None and state["reason"] in ("StartError", "ContainerCannotRun")
    assert "no-such-cmd-xyz" in state["message"]


def test_missing_secret_keeps_the_container_waiting(kube: Kube) -> None:
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "no-such-secret", "key": "k"}}}]
    name = make_pod(kube, "print('never')", env=env)

    def waiting() -> dict[str, Any] | None:
        for cs in ((kube.pod(name) or {}).get("status") or {}).get("containerStatuses") or []:
            state = (cs.get("state") or {}).get("waiting") or {}
            if state.get("reason") == "CreateContainerConfigError":
                return dict(state)
        return None

    state = wait_for(waiting, "CreateContainerConfigError")
    assert 'secret "no-such-secret" not found' in state["message"]
    assert phase(kube.pod(name)) == "Pending"


HOLD = "llmbatch.io/test-hold"


def final_state_on_delete(kube: Kube, name: str) -> tuple[dict[str, Any], str]:
    """Delete the pod and return the container state it ends with. A finalizer of the test's
    own keeps the pod readable after the kubelet is done with it."""
    running(kube, name)
    wait_for(lambda: "started" in kube.logs(name), "the process to be up")
    kube.core.patch_namespaced_pod(name, NS, {"metadata": {"finalizers": [HOLD]}})
    kube.delete_pod(name)
    try:
        pod = ended(kube, name)
        logs = kube.logs(name)
    finally:
        kube.core.patch_namespaced_pod(name, NS, {"metadata": {"finalizers": None}})
    wait_for(lambda: kube.pod(name) is None, "the pod removed once released")
    state = terminated(pod)
    assert state is not None
    return state, logs


def test_delete_sends_sigterm_first(kube: Kube) -> None:
    code = (
        # os.write/os._exit: a print in the handler could re-enter an unfinished print.
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (os.write(1, b'got TERM\\n'), os._exit(0)))\n"
        "print('started', flush=True)\ntime.sleep(60)"
    )
    name = make_pod(kube, code, grace=20)
    state, logs = final_state_on_delete(kube, name)
    assert state["exitCode"] == 0 and "got TERM" in logs


def test_delete_kills_after_the_grace_period(kube: Kube) -> None:
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('started', flush=True)\ntime.sleep(60)"
    )
    name = make_pod(kube, code, grace=1)
    state, _ = final_state_on_delete(kube, name)
    assert state["exitCode"] == 137


def sandbox_only(sandbox: SandboxInfo) -> None:
    if not sandbox.is_sandbox:
        pytest.skip("a sandbox-only control")


@pytest.mark.sandbox_only
def test_kill_annotation_sigkills_the_process(kube: Kube, sandbox: SandboxInfo) -> None:
    sandbox_only(sandbox)
    name = make_pod(kube, SLEEP)
    running(kube, name)
    kube.annotate_pod(name, {"sandbox.llmbatch.io/kill": "SIGKILL"})
    pod = ended(kube, name)
    assert phase(pod) == "Failed" and terminated(pod)["exitCode"] == 137  # type: ignore[index]


@pytest.mark.sandbox_only
def test_preempt_annotation_sets_disruption_target(kube: Kube, sandbox: SandboxInfo) -> None:
    sandbox_only(sandbox)
    from kubernetes import watch

    name = make_pod(kube, SLEEP)
    pod = running(kube, name)
    kube.annotate_pod(name, {"sandbox.llmbatch.io/preempt": "true"})
    seen: dict[str, Any] = {}
    stream = watch.Watch()
    for event in stream.stream(
        kube.core.list_namespaced_pod,
        NS,
        field_selector=f"metadata.name={name}",
        resource_version=pod["metadata"]["resourceVersion"],
        timeout_seconds=30,
    ):
        obj = kube.core.api_client.sanitize_for_serialization(event["object"])
        for c in obj["status"].get("conditions") or []:
            if c["type"] == "DisruptionTarget":
                seen = c
        if event["type"] == "DELETED":
            stream.stop()
    assert seen.get("status") == "True" and seen.get("reason") == "PreemptionByScheduler"


@pytest.mark.sandbox_only
def test_gpu_slots_limit_concurrent_gpu_pods(kube: Kube, sandbox: SandboxInfo) -> None:
    sandbox_only(sandbox)  # the fixture's sandbox has the default 2 GPU slots
    gpu = {"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "100m"}}}
    names = [make_pod(kube, SLEEP, prefix="gpu", **gpu) for _ in range(3)]
    wait_for(
        lambda: sum(phase(kube.pod(n)) == "Running" for n in names) == 2, "two GPU pods running"
    )

    def unschedulable() -> str | None:
        for n in names:
            for c in ((kube.pod(n) or {}).get("status") or {}).get("conditions") or []:
                if c["type"] == "PodScheduled" and c["status"] == "False":
                    assert c["reason"] == "Unschedulable"
                    return n if "Insufficient nvidia.com/gpu" in c["message"] else None
        return None

    waiting = wait_for(unschedulable, "an Unschedulable GPU pod")
    assert phase(kube.pod(waiting)) == "Pending"
    recorded = (kube.pod(waiting) or {})["spec"]["containers"][0]["resources"]
    assert recorded["limits"] == {"nvidia.com/gpu": "1"}
    victim = next(n for n in names if n != waiting)
    kube.delete_pod(victim, grace=0)
    running(kube, waiting)


def test_events_tell_the_story(kube: Kube) -> None:
    name = make_pod(kube, "print('hi')")
    ended(kube, name)

    def reasons() -> set[str]:
        events = kube.core.list_namespaced_event(NS).items
        return {e.reason for e in events if e.involved_object.name == name}

    wait_for(lambda: {"Scheduled", "Started"} <= reasons(), "Scheduled and Started events")
