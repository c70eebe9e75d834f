"""The project's own BatchJob CRD on the emulator: kubectl apply of the example, printer
columns, the 422 users see, immutability."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.sandbox.apiserver.conftest import Cluster, crd_established, wait_for
from tests.sandbox.apiserver.kubectl import kubectl

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def batchjob_crd(cluster: Cluster) -> JSON:
    try:
        from llmbatch.api.crd import build_crd
    except ImportError:
        pytest.skip("llmbatch.api.crd.build_crd is not there yet")
    crd = build_crd()
    ext = client.ApiextensionsV1Api(cluster.api)
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_for(lambda: crd_established(cluster, "batchjobs.llmbatch.io"), what="established")
    return crd


def _example() -> JSON:
    doc: JSON = yaml.safe_load((ROOT / "examples" / "batchjob.yaml").read_text())
    return doc


def test_apply_example_and_printer_columns(
    cluster: Cluster, batchjob_crd: JSON, namespace: str, tmp_path: Path
) -> None:
    out = kubectl(
        cluster.kubeconfig, "apply", "-n", namespace, "-f", str(ROOT / "examples" / "batchjob.yaml")
    ).stdout
    assert "created" in out
    name = _example()["metadata"]["name"]
    client.CustomObjectsApi(cluster.api).patch_namespaced_custom_object_status(
        "llmbatch.io",
        "v1alpha1",
        namespace,
        "batchjobs",
        name,
        {
            "status": {
                "phase": "Running",
                "progress": "3/20",
                "deadline": "2030-01-01T00:00:00Z",
                "throughput": 12.5,
                "eta": "1m",
                "shardCount": 2,
            }
        },
    )
    table = kubectl(cluster.kubeconfig, "get", "batchjobs", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "PROGRESS", "DEADLINE", "AGE"]
    assert table[1].split()[:4] == [name, "Running", "3/20", "2030-01-01T00:00:00Z"]
    wide = kubectl(cluster.kubeconfig, "get", "bj", "-n", namespace, "-o", "wide").stdout
    header = wide.splitlines()[0].split()
    assert header == [
        "NAME",
        *("PHASE", "PROGRESS", "DEADLINE", "AGE"),
        *("MODEL", "THROUGHPUT", "ETA", "SHARDS"),
    ]
    model = _example()["spec"]["model"]["name"]
    assert wide.splitlines()[1].split()[-4:] == [model, "12.5", "1m", "2"]


def test_invalid_parallelism_is_422_naming_the_field(
    cluster: Cluster, batchjob_crd: JSON, namespace: str
) -> None:
    body = _example()
    body["metadata"]["name"] = "x"
    body["spec"]["parallelism"] = 0
    status, answer = cluster.raw(
        "POST", f"/apis/llmbatch.io/v1alpha1/namespaces/{namespace}/batchjobs", body
    )
    assert status == 422
    assert answer["message"] == (
        'BatchJob.llmbatch.io "x" is invalid: spec.parallelism: Invalid value: 0: '
        "spec.parallelism in body should be greater than or equal to 1"
    )


def test_max_parallelism_below_parallelism_is_422_and_it_may_change(
    cluster: Cluster, batchjob_crd: JSON, namespace: str
) -> None:
    body = _example()
    body["metadata"]["name"] = "elastic"
    body["spec"].update({"parallelism": 2, "maxParallelism": 1})
    path = f"/apis/llmbatch.io/v1alpha1/namespaces/{namespace}/batchjobs"
    status, answer = cluster.raw("POST", path, body)
    assert status == 422
    assert "spec.maxParallelism must be at least spec.parallelism" in answer["message"]
    body["spec"]["maxParallelism"] = 3
    status, _ = cluster.raw("POST", path, body)
    assert status == 201
    # The ceiling may move while the batch runs (parallelism may not), never below the floor.
    custom = client.CustomObjectsApi(cluster.api)
    args = ("llmbatch.io", "v1alpha1", namespace, "batchjobs", "elastic")
    patched = custom.patch_namespaced_custom_object(*args, {"spec": {"maxParallelism": 4}})
    assert patched["spec"]["maxParallelism"] == 4
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(*args, {"spec": {"maxParallelism": 1}})
    assert exc.value.status == 422


def test_model_is_immutable_suspend_is_not(
    cluster: Cluster, batchjob_crd: JSON, namespace: str
) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    body = copy.deepcopy(_example())
    body["metadata"]["name"] = "imm"
    custom.create_namespaced_custom_object("llmbatch.io", "v1alpha1", namespace, "batchjobs", body)
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            "llmbatch.io",
            "v1alpha1",
            namespace,
            "batchjobs",
            "imm",
            {"spec": {"model": {"name": "other"}}},
        )
    assert exc.value.status == 422 and "spec.model" in exc.value.body
    patched = custom.patch_namespaced_custom_object(
        "llmbatch.io", "v1alpha1", namespace, "batchjobs", "imm", {"spec": {"suspend": True}}
    )
    assert patched["spec"]["suspend"] is True and patched["metadata"]["generation"] == 2


def test_ray_workers_with_shard_counts_is_422_saying_what_to_fix(
    cluster: Cluster, batchjob_crd: JSON, namespace: str
) -> None:
    path = f"/apis/llmbatch.io/v1alpha1/namespaces/{namespace}/batchjobs"
    body = _example()
    body["metadata"]["name"] = "kuberay"
    body["spec"].update({"backend": "ray", "ray": {"workers": 2}, "parallelism": 2})
    body["spec"].pop("maxParallelism", None)
    status, answer = cluster.raw("POST", path, body)
    assert status == 422
    assert "set spec.parallelism to 1" in answer["message"]
    body["spec"].update({"parallelism": 1, "maxParallelism": 2})
    status, answer = cluster.raw("POST", path, body)
    assert status == 422
    assert "remove spec.maxParallelism" in answer["message"]
    del body["spec"]["maxParallelism"]
    status, _ = cluster.raw("POST", path, body)
    assert status == 201
    # A maxParallelism added later is refused too (the operator would ignore it).
    custom = client.CustomObjectsApi(cluster.api)
    args = ("llmbatch.io", "v1alpha1", namespace, "batchjobs", "kuberay")
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(*args, {"spec": {"maxParallelism": 3}})
    assert exc.value.status == 422 and "remove spec.maxParallelism" in exc.value.body
