"""Which engine runs a BatchJob's shards (spec.backend), as the operator needs it: the runner
arguments of a one-pod shard, and whether a KubeRay RayJob runs the batch instead of the run
Job (``build_rayjob.py``, ``kuberay.py``).

The form is chosen once, when the operator names the batch's children: ``status.jobName`` is
``<name>-run`` (the Indexed Job) or ``<name>-ray`` (the RayJob), and every later pass follows
the status, so an edit of spec.backend or spec.ray.workers never moves a running batch to the
other form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmbatch.api.batchjob import BatchJobSpec, ResourcesSpec
from llmbatch.controller.kuberay import HEAD_CONTAINER, WORKER_CONTAINER, rayjob_name
from llmbatch.controller.names import run_job_name

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation


def uses_rayjob(spec: BatchJobSpec) -> bool:
    """backend ray with workers: a KubeRay RayJob runs the batch instead of the run Job."""
    return spec.backend == "ray" and spec.ray is not None and spec.ray.workers is not None


# The Ray head runs the driver and no engine: 2 CPUs, 8Gi and no GPU unless headResources says.
RAY_HEAD_DEFAULT = ResourcesSpec(gpu=0, cpu="2", memory="8Gi")


def ray_head_resources(spec: BatchJobSpec) -> ResourcesSpec:
    return (spec.ray.head_resources if spec.ray else None) or RAY_HEAD_DEFAULT


def ray_worker_resources(spec: BatchJobSpec) -> ResourcesSpec:
    return (spec.ray.worker_resources if spec.ray else None) or spec.resources


def container_resources(spec: BatchJobSpec, container: str) -> ResourcesSpec:
    """The resources the spec gives the pods of ``container``'s role: a RayJob's head or
    workers, else a shard (spec.resources)."""
    if container == HEAD_CONTAINER:
        return ray_head_resources(spec)
    if container == WORKER_CONTAINER:
        return ray_worker_resources(spec)
    return spec.resources


def run_child_name(spec: BatchJobSpec, owner: str) -> str:
    """The name status.jobName records when the batch starts: the RayJob or the run Job."""
    return rayjob_name(owner) if uses_rayjob(spec) else run_job_name(owner)


def is_rayjob(job_name: str | None, owner: str) -> bool:
    """Whether the child named in status.jobName is the batch's RayJob."""
    return job_name is not None and job_name == rayjob_name(owner)


def runs_rayjob(obs: Observation) -> bool:
    """The batch runs as a KubeRay RayJob (as its status says since it started)."""
    return is_rayjob(obs.status.job_name, obs.name)


def runner_backend_args(spec: BatchJobSpec) -> list[str]:
    """Arguments a one-pod shard's ``llmbatch-runner run`` gets for its backend. Backend ray
    starts a local Ray instance over the pod's GPUs (at least one logical GPU, so vLLM's Ray
    stage schedules on a CPU-only node too)."""
    if spec.backend != "ray":
        return []
    return ["--backend", "ray", "--ray-gpus", str(max(spec.resources.gpu, 1))]
