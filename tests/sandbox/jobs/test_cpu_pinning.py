"""The sandbox kubelet's static CPU manager policy (``--cpu-manager-policy static``): a container
with a whole-number CPU limit runs on cores of its own. Sandbox-only: a real cluster's kubelet
does this with cpusets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmbatch_sandbox.kubelet.cpus import CpuPool, whole_cpus
from tests.fixtures.sandbox import start_sandbox, stop_sandbox
from tests.sandbox.jobs.kube import Kube, container, phase, unique, wait_for

AFFINITY = "import json, os; print(json.dumps(sorted(os.sched_getaffinity(0))), flush=True)"


def test_whole_cpus_reads_whole_number_limits_only() -> None:
    def of(cpu: object) -> int | None:
        return whole_cpus({"resources": {"limits": {"cpu": cpu}}})

    assert (of("1"), of(2), of("2000m"), of("1.0")) == (1, 2, 2, 1)
    assert (of("500m"), of("1.5"), of("0"), of("lots")) == (None, None, None, None)
    assert whole_cpus({"resources": {"requests": {"cpu": "1"}}}) is None


def test_cpu_pool_hands_out_cores_exclusively() -> None:
    pool = CpuPool({0, 1, 2})
    assert pool.acquire("a", 1) == frozenset({0})
    assert pool.acquire("b", 2) == frozenset({1, 2})
    assert pool.acquire("c", 1) is None  # nothing free: the container is not pinned
    pool.release("a")
    assert pool.acquire("c", 1) == frozenset({0})
    assert pool.free == frozenset()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to pin apart")
def test_static_policy_pins_whole_cpu_containers(tmp_path: Path) -> None:
    info = start_sandbox(tmp_path, ["--cpu-manager-policy", "static"])
    assert info.process is not None
    try:
        from kubernetes import config

        with config.new_client_from_config(config_file=str(info.kubeconfig)) as api_client:  # type: ignore[no-untyped-call]
            kube = Kube(api_client)
            one = {"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}
            names = [unique("pinned"), unique("pinned"), unique("shared")]
            for name, extra in zip(names, [one, one, {}], strict=True):
                kube.create_pod(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": name},
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [container(AFFINITY, **extra)],
                        },
                    }
                )

            def all_ended() -> bool:
                return all(phase(kube.pod(n)) == "Succeeded" for n in names)

            wait_for(all_ended, "the three pods to end")
            seen = [json.loads(kube.logs(name).strip()) for name in names]
    finally:
        stop_sandbox(info.process)
    # The two one-core pods each got one core; they ran at once or one after the other, so
    # the cores may be the same, but neither saw more than one.
    assert len(seen[0]) == 1 and len(seen[1]) == 1
    assert seen[2] == sorted(os.sched_getaffinity(0))
