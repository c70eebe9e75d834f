"""Backend ray's cluster form: the pure builder of the KubeRay ``RayJob`` (ray.io/v1) that runs
a batch with ``spec.ray.workers`` across a Ray cluster.

The RayJob's entrypoint is the same ``llmbatch-runner run --backend ray`` a one-pod shard runs,
joining the cluster (``--ray-address auto``) instead of starting Ray itself: it reads the same
plan, claims the same chunk leases and writes the same parts and progress, so status and
finalize are the ones of backend vllm. It runs as one shard (the Ray cluster is the
parallelism); the engine replicas are the workers' GPUs over tensor_parallel_size. What its
status means for ours is ``kuberay.py``'s; the operator creates it after the plan step, where it
would create the run Job.

KubeRay must be installed in the cluster (the operator only creates RayJobs). The builder is
tested against KubeRay's published schema; the sandbox has no KubeRay to run it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from llmbatch.api.batchjob import BatchJobSpec, ResourcesSpec
from llmbatch.api.timefmt import format_time
from llmbatch.controller.backends import ray_head_resources, ray_worker_resources, uses_rayjob
from llmbatch.controller.build_jobs import (
    KUEUE_QUEUE_LABEL,
    TERMINATION_MESSAGE_POLICY,
    _labels,
    active_deadline_seconds,
    literal,
    owner_reference,
    storage_env,
)
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.kuberay import (
    HEAD_CONTAINER,
    RAY_ROLE,
    RAYJOB_API_VERSION,
    RAYJOB_KIND,
    WORKER_CONTAINER,
    rayjob_name,
)
from llmbatch.controller.policy.deadline import deadline_of

# The Ray release the runner image's ray extra carries (pyproject); KubeRay uses it to pick the
# submitter's command.
RAY_VERSION = "2.60.0"
WORKER_GROUP = "gpu"
# Ports the head serves: GCS, dashboard (job submission), Ray client.
_HEAD_PORTS = (("gcs", 6379), ("dashboard", 8265), ("client", 10001))
# How long KubeRay keeps the finished cluster (its pods, for a look at their logs): the batch's
# own TTL (spec.ttlSecondsAfterFinished) deletes the RayJob itself.
CLUSTER_TTL_SECONDS = 60


def _resources(spec: ResourcesSpec) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    if spec.cpu:
        amounts["cpu"] = spec.cpu
    if spec.memory:
        amounts["memory"] = spec.memory
    limits: dict[str, str] = dict(amounts)
    if spec.gpu > 0:
        limits[spec.gpu_resource_name] = str(spec.gpu)
    out: dict[str, Any] = {}
    if amounts:
        out["requests"] = amounts
    if limits:
        out["limits"] = limits
    return out


def _entrypoint(spec: BatchJobSpec, owner: str, deadline: datetime, gpus: int) -> str:
    """The runner's command line as one shell string (RayJob runs ``ray job submit -- <it>``);
    quoted, never $-doubled: no kubelet expands it."""
    engine_args = spec.model.engine_args
    args = [
        "llmbatch-runner", "run",
        "--input", spec.input,
        "--output", spec.output,
        "--model", spec.model.source,
        "--served-model-name", spec.model.name,
        "--endpoint", spec.endpoint.value,
        "--engine-args", json.dumps(engine_args, sort_keys=True, separators=(",", ":")),
        "--deadline", format_time(deadline),
        "--shard-index", "0",
        "--shard-count", "1",
        "--batch-name", owner,
        "--backend", "ray",
        "--ray-address", "auto",
        "--ray-gpus", str(gpus),
    ]  # fmt: skip
    return shlex.join(args)


def _container(
    name: str, image: str, env: list[dict[str, Any]], resources: ResourcesSpec
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "env": env,
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
    }
    amounts = _resources(resources)
    if amounts:
        container["resources"] = amounts
    return container


def _pod_template(
    spec: BatchJobSpec, container: dict[str, Any], labels: dict[str, str], gpu: bool
) -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": [container], "enableServiceLinks": False}
    if gpu:
        # Placement settings are the GPU pods' (the head needs no GPU node).
        if spec.node_selector:
            pod["nodeSelector"] = dict(spec.node_selector)
        if spec.tolerations:
            pod["tolerations"] = list(spec.tolerations)
        if spec.affinity:
            pod["affinity"] = dict(spec.affinity)
    if spec.priority_class_name:
        pod["priorityClassName"] = spec.priority_class_name
    return {"metadata": {"labels": labels}, "spec": pod}


def build_rayjob(
    batchjob: Mapping[str, Any], config: OperatorConfig, now: datetime
) -> dict[str, Any]:
    """The RayJob of a BatchJob with spec.ray.workers: a head (runs the entrypoint, no GPU)
    and one worker group of ``workers`` GPU pods; the cluster goes when the job ends."""
    meta = batchjob["metadata"]
    spec = BatchJobSpec.model_validate(batchjob.get("spec") or {})
    if not uses_rayjob(spec):
        raise ValueError("build_rayjob needs spec.backend ray with spec.ray.workers")
    assert spec.ray is not None and spec.ray.workers is not None
    owner = meta["name"]
    deadline = deadline_of(meta, spec)
    labels = _labels(owner, RAY_ROLE)
    rayjob_labels = dict(labels)
    if spec.queue_name:
        rayjob_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    env = [{"name": "LLMBATCH_BATCHJOB", "value": owner}, *storage_env(spec, config)]
    if spec.model.chat_template:
        env.append({"name": "LLMBATCH_CHAT_TEMPLATE", "value": literal(spec.model.chat_template)})
    workers = spec.ray.workers
    worker_resources = ray_worker_resources(spec)
    head_resources = ray_head_resources(spec)
    image = spec.runner_image or config.runner_image
    gpus = max(workers * worker_resources.gpu, 1)
    head = _container(HEAD_CONTAINER, image, env, head_resources)
    head["ports"] = [{"name": name, "containerPort": port} for name, port in _HEAD_PORTS]
    worker = _container(WORKER_CONTAINER, image, env, worker_resources)
    return {
        "apiVersion": RAYJOB_API_VERSION,
        "kind": RAYJOB_KIND,
        "metadata": {
            "name": rayjob_name(owner),
            "namespace": meta.get("namespace"),
            "labels": rayjob_labels,
            "ownerReferences": [owner_reference(batchjob)],
        },
        "spec": {
            "entrypoint": _entrypoint(spec, owner, deadline, gpus),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": CLUSTER_TTL_SECONDS,
            "activeDeadlineSeconds": active_deadline_seconds(
                deadline, now, config.deadline_grace_seconds
            ),
            "backoffLimit": spec.max_retries,
            # Kueue admits a RayJob by unsuspending it, so a queued one starts suspended.
            "suspend": bool(spec.suspend or spec.queue_name),
            "rayClusterSpec": {
                "rayVersion": RAY_VERSION,
                "headGroupSpec": {
                    # The head runs the driver only: no engine lands on it.
                    "rayStartParams": {"num-gpus": "0", "dashboard-host": "0.0.0.0"},
                    "template": _pod_template(spec, head, labels, gpu=False),
                },
                "workerGroupSpecs": [
                    {
                        "groupName": WORKER_GROUP,
                        "replicas": workers,
                        "minReplicas": workers,
                        "maxReplicas": workers,
                        "rayStartParams": {},
                        "template": _pod_template(spec, worker, labels, gpu=True),
                    }
                ],
            },
        },
    }
