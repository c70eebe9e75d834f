"""Unit tests of the Job controller's and kubelet's pure parts (no sandbox)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from llmbatch_sandbox.jobcontroller import conditions as cond
from llmbatch_sandbox.jobcontroller.failurepolicy import match_pod_failure_policy
from llmbatch_sandbox.jobcontroller.indexes import format_indexes, parse_indexes
from llmbatch_sandbox.jobcontroller.podbuilder import (
    COMPLETION_INDEX_KEY,
    TRACKING_FINALIZER,
    build_pod,
    pod_index,
)
from llmbatch_sandbox.kubeconfig import build_kubeconfig
from llmbatch_sandbox.kubelet.envresolve import EnvError, expand, field_value
from llmbatch_sandbox.kubelet.kubelet import gpu_request, grace_seconds, parse_signal
from llmbatch_sandbox.kubelet.process import base_environment, exit_code, find_executable


@pytest.mark.parametrize(
    ("indexes", "text"),
    [([], ""), ([3], "3"), ([0, 1, 2, 5, 7, 8], "0-2,5,7-8"), ([9, 1, 0], "0-1,9")],
)
def test_index_ranges_round_trip(indexes: list[int], text: str) -> None:
    assert format_indexes(indexes) == text
    assert parse_indexes(text) == set(indexes)


def test_parse_indexes_drops_out_of_range_and_garbage() -> None:
    assert parse_indexes("0-3,x,7,5-2", limit=3) == {0, 1, 2}


def failed_pod(code: int, container: str = "main", conditions: Any = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default"},
        "status": {
            "phase": "Failed",
            "conditions": list(conditions),
            "containerStatuses": [{"name": container, "state": {"terminated": {"exitCode": code}}}],
        },
    }


POLICY = {
    "rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]},
        },
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
    ]
}


def test_failure_policy_first_matching_rule_wins() -> None:
    disrupted = failed_pod(42, conditions=[{"type": "DisruptionTarget", "status": "True"}])
    match = match_pod_failure_policy(POLICY, disrupted)
    assert match is not None and match.action == "Ignore"
    match = match_pod_failure_policy(POLICY, failed_pod(42))
    assert match is not None and (match.action, match.rule_index) == ("FailJob", 1)
    assert "exit code 42 matching FailJob rule at index 1" in match.message
    other = match_pod_failure_policy(POLICY, failed_pod(42, container="sidecar"))
    assert other is not None and other.action == "Count"
    assert match_pod_failure_policy(POLICY, failed_pod(1)) is None
    assert match_pod_failure_policy(None, failed_pod(42)) is None


def test_failure_policy_ignores_zero_exit_codes_and_false_conditions() -> None:
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [5]}}]}
    assert match_pod_failure_policy(policy, failed_pod(0)) is None
    cond_policy = {
        "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
    }
    pod = failed_pod(1, conditions=[{"type": "DisruptionTarget", "status": "False"}])
    assert match_pod_failure_policy(cond_policy, pod) is None


JOB = {
    "metadata": {"name": "shards", "namespace": "ns1", "uid": "u-1"},
    "spec": {
        "completionMode": "Indexed",
        "completions": 3,
        "backoffLimitPerIndex": 1,
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "main", "image": "i", "command": ["true"]}]},
        },
    },
}


def test_indexed_pod_carries_index_owner_and_finalizer() -> None:
    pod = build_pod(JOB, 2, failure_count=1)
    meta = pod["metadata"]
    assert meta["generateName"] == "shards-2-"
    assert meta["labels"][COMPLETION_INDEX_KEY] == meta["annotations"][COMPLETION_INDEX_KEY] == "2"
    assert meta["labels"]["batch.kubernetes.io/job-name"] == "shards"
    assert meta["labels"]["batch.kubernetes.io/controller-uid"] == "u-1"
    assert meta["labels"]["app"] == "x"
    assert meta["annotations"]["batch.kubernetes.io/job-index-failure-count"] == "1"
    assert meta["finalizers"] == [TRACKING_FINALIZER]
    (owner,) = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "shards",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert pod["spec"]["hostname"] == "shards-2"
    env = pod["spec"]["containers"][0]["env"]
    assert env[0]["name"] == "JOB_COMPLETION_INDEX"
    assert pod_index(pod, 3) == 2 and pod_index(pod, 2) is None
    # The Job's template is not modified.
    assert "env" not in JOB["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]


def test_set_condition_keeps_transition_time_unless_status_changes() -> None:
    first = cond.set_condition([], "Suspended", "True", "JobSuspended", "Job suspended", "t1")
    same = cond.set_condition(first, "Suspended", "True", "Other", "msg", "t2")
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["reason"] == "Other"
    flipped = cond.set_condition(same, "Suspended", "False", "JobResumed", "Job resumed", "t3")
    assert flipped[0]["lastTransitionTime"] == "t3"
    assert first[0]["reason"] == "JobSuspended"  # pure


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"


def test_field_refs() -> None:
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "n",
            "labels": {"a": "1", "b": "2"},
            "annotations": {COMPLETION_INDEX_KEY: "4"},
        }
    }
    assert field_value(pod, "metadata.name") == "p"
    assert field_value(pod, "metadata.namespace") == "n"
    assert field_value(pod, f"metadata.annotations['{COMPLETION_INDEX_KEY}']") == "4"
    assert field_value(pod, "metadata.labels") == 'a="1"\nb="2"'
    with pytest.raises(EnvError):
        field_value(pod, "spec.bogus")


def test_executables_come_from_the_venv_first(tmp_path: Path) -> None:
    assert find_executable("python", "") == str(Path(sys.executable).parent / "python")
    assert find_executable("no-such-command-xyz", os.environ["PATH"]) is None
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\n")
    assert find_executable(str(script), "") is None  # not executable
    script.chmod(0o755)
    assert find_executable(str(script), "") == str(script)
    assert find_executable("tool", str(tmp_path)) == str(script)


def test_exit_codes_and_signals() -> None:
    assert exit_code(3) == 3
    assert exit_code(-signal.SIGKILL) == 137
    assert exit_code(-signal.SIGTERM) == 143
    assert parse_signal("") == signal.SIGKILL
    assert parse_signal("term") == signal.SIGTERM
    assert parse_signal("9") == signal.SIGKILL


def test_base_environment_passes_vllm_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("SECRET_OF_THE_SANDBOX", "x")
    env = base_environment("host-0")
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["HOSTNAME"] == "host-0"
    assert "SECRET_OF_THE_SANDBOX" not in env
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_gpu_requests_and_grace() -> None:
    pod: dict[str, Any] = {
        "metadata": {},
        "spec": {
            "containers": [
                {"resources": {"limits": {"nvidia.com/gpu": "2"}}},
                {"resources": {"requests": {"nvidia.com/gpu": 1, "cpu": "1"}}},
                {},
            ],
            "terminationGracePeriodSeconds": 5,
        },
    }
    assert gpu_request(pod) == 3
    assert grace_seconds(pod) == 5
    pod["metadata"]["deletionGracePeriodSeconds"] = 0
    assert grace_seconds(pod) == 0
    assert grace_seconds({"metadata": {}, "spec": {}}) == 30


def test_kubeconfig_points_at_the_server() -> None:
    config = build_kubeconfig("http://127.0.0.1:1234")
    assert config["clusters"][0]["cluster"]["server"] == "http://127.0.0.1:1234"
    assert config["current-context"] == config["contexts"][0]["name"]
