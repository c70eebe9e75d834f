"""Backend ray's builders: the one-pod shard's runner arguments, and the KubeRay RayJob of the
cluster form, validated against KubeRay's published RayJob schema (trimmed, see the fixture)
with unknown fields an error. What its status means for ours: test_kuberay.py."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.controller.backends import runner_backend_args, uses_rayjob
from llmbatch.controller.build_jobs import build_runner_job
from llmbatch.controller.build_rayjob import RAY_VERSION, build_rayjob
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.kuberay import pod_labels, rayjob_name
from llmbatch_sandbox.apiserver.schema import prune, validate
from tests.controller.factories import at, batchjob

FIXTURE = Path(__file__).parent.parent / "fixtures" / "kuberay" / "rayjob-v1-schema.yaml"
CONFIG = OperatorConfig()


def _resolve(node: Any, refs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolve(refs[node["$ref"]], refs)
        return {key: _resolve(value, refs) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, refs) for item in node]
    return node


def rayjob_schema() -> dict[str, Any]:
    raw = yaml.safe_load(FIXTURE.read_text())
    refs = {"podTemplate": raw["podTemplate"]}
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "spec": _resolve(raw["spec"], refs),
            "status": _resolve(raw["status"], refs),
        },
    }


def _problems(obj: dict[str, Any]) -> list[str]:
    schema = rayjob_schema()
    dropped: list[str] = []
    prune(obj, schema, root=True, dropped=dropped)
    errors = [e.render() for e in validate(obj, schema)]
    return errors + [f"unknown field {path}" for path in dropped]


def _ray_batch(**spec: Any) -> dict[str, Any]:
    ray = {"workers": 3, "workerResources": {"gpu": 2, "cpu": "8", "memory": "64Gi"}}
    return batchjob(backend="ray", ray=ray, **spec)


def test_the_rayjob_validates_against_kuberays_schema() -> None:
    body = _ray_batch(
        nodeSelector={"gpu": "a100"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        model={
            "name": "tiny-qwen",
            "source": "/models/tiny",
            "engineArgs": {"tensor_parallel_size": 2},
            "chatTemplate": "{{ messages }}",
        },
    )
    rayjob = build_rayjob(body, CONFIG, at(1))
    assert _problems(rayjob) == []
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert rayjob["metadata"]["name"] == rayjob_name("demo") == "demo-ray"
    assert rayjob["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_a_wrong_field_fails_the_schema_check() -> None:
    rayjob = build_rayjob(_ray_batch(), CONFIG, at(1))
    rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replica"] = 3
    del rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    problems = _problems(rayjob)
    assert any("rayStartParams" in p for p in problems)
    assert any("replica" in p for p in problems)


def test_head_runs_the_runner_entrypoint_and_workers_hold_the_gpus() -> None:
    rayjob = build_rayjob(_ray_batch(), CONFIG, at(1))
    spec = rayjob["spec"]
    args = shlex.split(spec["entrypoint"])
    assert args[:2] == ["llmbatch-runner", "run"]
    assert args[args.index("--ray-address") + 1] == "auto"
    assert args[args.index("--backend") + 1] == "ray"
    assert args[args.index("--ray-gpus") + 1] == "6"  # 3 workers x 2 GPUs
    assert args[args.index("--shard-count") + 1] == "1"
    assert spec["shutdownAfterJobFinishes"] is True
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    head_container = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]
    group = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 3
    worker = group["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "2"
    env = {e["name"]: e for e in worker["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "llmbatch-s3"


def test_head_and_workers_end_with_their_log_tail_as_termination_message() -> None:
    spec = build_rayjob(_ray_batch(), CONFIG, at(1))["spec"]["rayClusterSpec"]
    templates = [spec["headGroupSpec"]["template"]]
    templates += [group["template"] for group in spec["workerGroupSpecs"]]
    containers = [c for t in templates for c in t["spec"]["containers"]]
    assert len(containers) == 2
    assert {c["terminationMessagePolicy"] for c in containers} == {"FallbackToLogsOnError"}


def test_a_dollar_in_the_input_reaches_the_runner_unexpanded() -> None:
    rayjob = build_rayjob(_ray_batch(input="s3://llmbatch/in/$(HOME) x.jsonl"), CONFIG, at(1))
    args = shlex.split(rayjob["spec"]["entrypoint"])
    assert args[args.index("--input") + 1] == "s3://llmbatch/in/$(HOME) x.jsonl"


def test_the_one_pod_form_passes_backend_ray_to_the_shards() -> None:
    one_pod = batchjob(backend="ray", resources={"gpu": 0})
    spec = BatchJobSpec.model_validate(one_pod["spec"])
    assert not uses_rayjob(spec)
    command = build_runner_job(one_pod, CONFIG, at(1))["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert command[-4:] == ["--backend", "ray", "--ray-gpus", "1"]
    assert runner_backend_args(BatchJobSpec.model_validate(batchjob()["spec"])) == []
    with pytest.raises(ValueError, match=r"ray\.workers"):
        build_rayjob(one_pod, CONFIG, at(1))


def test_spec_rules_of_backend_ray() -> None:
    with pytest.raises(ValueError, match=r"spec.ray requires spec.backend: ray"):
        BatchJobSpec.model_validate(batchjob(ray={"workers": 2})["spec"])
    with pytest.raises(ValueError, match="chat/completions only"):
        BatchJobSpec.model_validate(batchjob(backend="ray", endpoint="/v1/embeddings")["spec"])
    with pytest.raises(ValueError, match="workers"):
        BatchJobSpec.model_validate(batchjob(backend="ray", ray={"workers": 0})["spec"])


def test_the_rayjob_and_its_pods_carry_the_labels_the_operator_finds_them_by() -> None:
    rayjob = build_rayjob(_ray_batch(), CONFIG, at(1))
    assert rayjob["metadata"]["labels"]["llmbatch.io/role"] == "ray"
    cluster = rayjob["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"]]
    templates += [group["template"] for group in cluster["workerGroupSpecs"]]
    for template in templates:
        assert pod_labels("demo").items() <= template["metadata"]["labels"].items()
    # Only the worker's container name counts for GPU time (kuberay.view_rayjob).
    assert cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["name"] == (
        "ray-worker"
    )


def test_suspend_deadline_retries_and_kueue_reach_the_rayjob() -> None:
    rayjob = build_rayjob(_ray_batch(maxRetries=2), CONFIG, at(1))
    spec = rayjob["spec"]
    assert spec["suspend"] is False
    assert spec["backoffLimit"] == 2
    # The window is 1h from CREATED; built a minute in, plus the operator's grace.
    assert spec["activeDeadlineSeconds"] == 59 * 60 + CONFIG.deadline_grace_seconds
    assert build_rayjob(_ray_batch(suspend=True), CONFIG, at(1))["spec"]["suspend"] is True
    queued = build_rayjob(_ray_batch(queueName="gpu-queue"), CONFIG, at(1))
    # Kueue admits a RayJob by unsuspending it.
    assert queued["spec"]["suspend"] is True
    assert queued["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert _problems(queued) == []


def test_the_rayjob_names_the_ray_release_the_runner_image_carries() -> None:
    """KubeRay picks the submitter's command by rayVersion: it must be the ray extra's pin, and
    both runner images install that extra by default (build argument EXTRAS)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    [pin] = pyproject["project"]["optional-dependencies"]["ray"]
    assert pin.endswith(f"=={RAY_VERSION}")
    rayjob = build_rayjob(_ray_batch(), CONFIG, at(1))
    assert rayjob["spec"]["rayClusterSpec"]["rayVersion"] == RAY_VERSION
    for image in ("runner", "runner-cpu"):
        dockerfile = (root / "images" / image / "Dockerfile").read_text()
        [extras] = [line for line in dockerfile.splitlines() if line.startswith("ARG EXTRAS=")]
        assert "ray" in extras.split("=", 1)[1].split(","), image


def test_the_kuberay_example_passes_validation_and_builds_a_valid_rayjob() -> None:
    from llmbatch.controller.validation import check_spec

    path = Path(__file__).resolve().parents[2] / "examples" / "batchjob-kuberay.yaml"
    example = yaml.safe_load(path.read_text())
    _, problems = check_spec(example["spec"])
    assert problems == []
    body = batchjob(**example["spec"])
    rayjob = build_rayjob(body, CONFIG, at(1))
    assert _problems(rayjob) == []
    group = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == example["spec"]["ray"]["workers"]
