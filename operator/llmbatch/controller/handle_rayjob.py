"""The I/O side of the KubeRay form (spec.ray.workers): check at validation that the cluster
serves RayJobs, read the batch's RayJob and its pods for a pass, and carry out the run actions
on it (create, suspend or resume) as the policies decided for the run Job.

The daemon reads the RayJob every pass (every few seconds while the batch runs) rather than
watching RayJobs, so the operator needs no list or watch on them and starts without KubeRay.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from llmbatch.controller.actions import Action, CreateRunJob, SetRunJobSuspended
from llmbatch.controller.build_rayjob import build_rayjob
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.kube import KubeApi
from llmbatch.controller.kuberay import pod_labels, rayjob_name, view_rayjob
from llmbatch.controller.observation import Observation
from llmbatch.controller.policy.fetch import FetchPlan
from llmbatch.controller.validation import ValidationResult

logger = logging.getLogger(__name__)

NO_KUBERAY = (
    "spec.ray.workers runs the batch as a KubeRay RayJob, and this cluster has no RayJob API "
    "(ray.io/v1 rayjobs): install the KubeRay operator and create the BatchJob again, or leave "
    "spec.ray.workers unset to run backend ray in one pod per shard"
)


async def check_kuberay(api: KubeApi, result: ValidationResult) -> ValidationResult:
    """The validation result, failed when KubeRay is not installed (the RayJob could never be
    created, and the batch would wait in the queue for nothing)."""
    if not result.ok or await api.has_rayjob_api():
        return result
    return ValidationResult.failed(NO_KUBERAY)


async def read_rayjob(
    api: KubeApi, namespace: str, obs: Observation, plan: FetchPlan
) -> Observation:
    """The RayJob as the run child's view; its head and worker pods while it may have some."""
    rayjob = await api.get_rayjob(namespace, obs.run_job)
    run = view_rayjob(rayjob)
    if plan.wants_pods(run):
        run = view_rayjob(rayjob, await api.list_labelled_pods(namespace, pod_labels(obs.name)))
    return replace(obs, run=run)


async def run_action(
    api: KubeApi, batch: Mapping[str, Any], action: Action, config: OperatorConfig, now: datetime
) -> bool:
    """Carry out ``action`` on the RayJob if it is a run action; False otherwise (the plan and
    finalize Jobs are Jobs in both forms)."""
    meta = batch["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if isinstance(action, CreateRunJob):
        created = await api.create_rayjob(namespace, build_rayjob(batch, config, now))
        logger.info("%s/%s: RayJob %s", namespace, name, "created" if created else "exists")
        return True
    if isinstance(action, SetRunJobSuspended):
        # KubeRay deletes the Ray cluster of a suspended RayJob and makes a new one on resume.
        await api.patch_rayjob(namespace, rayjob_name(name), {"spec": {"suspend": action.suspend}})
        return True
    return False
