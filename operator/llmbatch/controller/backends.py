"""Which engine runs a BatchJob's shards (spec.backend), as the operator's builders need it:
the runner arguments of a one-pod shard, and whether a KubeRay RayJob runs the batch instead
of the run Job (``build_rayjob.py``)."""

from __future__ import annotations

from llmbatch.api.batchjob import BatchJobSpec


def uses_rayjob(spec: BatchJobSpec) -> bool:
    """backend ray with workers: a KubeRay RayJob runs the batch instead of the run Job."""
    return spec.backend == "ray" and spec.ray is not None and spec.ray.workers is not None


def runner_backend_args(spec: BatchJobSpec) -> list[str]:
    """Arguments a one-pod shard's ``llmbatch-runner run`` gets for its backend. Backend ray
    starts a local Ray instance over the pod's GPUs (at least one logical GPU, so vLLM's Ray
    stage schedules on a CPU-only node too)."""
    if spec.backend != "ray":
        return []
    return ["--backend", "ray", "--ray-gpus", str(max(spec.resources.gpu, 1))]
