"""Pure builders of the batch's Jobs: the plan Job (one CPU pod), the run Job (one Indexed
Job, a pod per shard) and the finalize Job (one CPU pod).

No API calls here: the same BatchJob, config and time give the same manifest, which is what
makes creation idempotent (a deterministic name, and 409 on a second create is success).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.api.documents import FinalizeReason
from llmbatch.api.exitcodes import ExitCode
from llmbatch.api.gvk import API_VERSION, KIND
from llmbatch.api.timefmt import format_time
from llmbatch.controller.backends import runner_backend_args
from llmbatch.controller.config import OperatorConfig
from llmbatch.controller.jobview import RUNNER_CONTAINER
from llmbatch.controller.names import (
    BATCHJOB_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROLE_LABEL,
    extra_run_job_name,
    finalize_job_name,
    label_value,
    plan_job_name,
    run_job_name,
)
from llmbatch.controller.policy.deadline import deadline_of

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


# The runner writes no /dev/termination-log: a failed container's last log lines become its
# termination message, the "last words" the operator quotes in status, conditions and events.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"


def literal(value: str) -> str:
    """A user string for a container command or env value, kept literal: the kubelet expands
    ``$(VAR)`` there (a URI naming ``$(AWS_SECRET_ACCESS_KEY)`` would receive the secret) and
    turns ``$$`` into ``$``, so every ``$`` is doubled."""
    return value.replace("$", "$$")


def owner_reference(batchjob: Mapping[str, Any]) -> dict[str, Any]:
    meta = batchjob["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(owner: str, role: str) -> dict[str, str]:
    return {
        BATCHJOB_LABEL: label_value(owner),
        ROLE_LABEL: role,
        MANAGED_BY_LABEL: MANAGED_BY,
    }


def storage_env(spec: BatchJobSpec, config: OperatorConfig) -> list[dict[str, Any]]:
    """S3 settings for a pod. Credentials are references to the Secret, never values."""
    env: list[dict[str, Any]] = []
    endpoint = spec.storage.endpoint or config.default_s3_endpoint
    region = spec.storage.region or config.default_s3_region
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": literal(endpoint)})
    if region:
        env.append({"name": "AWS_REGION", "value": literal(region)})
        env.append({"name": "AWS_DEFAULT_REGION", "value": literal(region)})
    if spec.storage.secret_ref is not None:
        for key in SECRET_KEYS:
            env.append(
                {
                    "name": key,
                    "valueFrom": {
                        "secretKeyRef": {"name": spec.storage.secret_ref.name, "key": key}
                    },
                }
            )
    env.extend({"name": name, "value": value} for name, value in config.runner_env)
    return env


def _resources(spec: BatchJobSpec) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    if spec.resources.cpu:
        amounts["cpu"] = spec.resources.cpu
    if spec.resources.memory:
        amounts["memory"] = spec.resources.memory
    limits = dict(amounts)
    if spec.resources.gpu > 0:
        # Extended resources are set as limits; Kubernetes copies them to requests.
        limits[spec.resources.gpu_resource_name] = str(spec.resources.gpu)
    resources: dict[str, Any] = {}
    if amounts:
        resources["requests"] = amounts
    if limits:
        resources["limits"] = limits
    return resources


def active_deadline_seconds(deadline: datetime, now: datetime, grace: int) -> int:
    return max(1, math.ceil((deadline - now).total_seconds())) + grace


def _batch_args(spec: BatchJobSpec, step: str) -> list[str]:
    """``llmbatch-runner <step>`` with the batch's input, output, model, endpoint and engine
    arguments."""
    return [
        "llmbatch-runner",
        step,
        "--input",
        literal(spec.input),
        "--output",
        literal(spec.output),
        "--model",
        literal(spec.model.source),
        "--served-model-name",
        literal(spec.model.name),
        "--endpoint",
        spec.endpoint.value,
        # The plan bounds a request's completion budget by max_model_len; shards load the engine.
        "--engine-args",
        literal(json.dumps(spec.model.engine_args, sort_keys=True, separators=(",", ":"))),
    ]


def _runner_container(
    spec: BatchJobSpec, config: OperatorConfig, owner: str, deadline: datetime
) -> dict[str, Any]:
    command = [
        *_batch_args(spec, "run"),
        "--deadline",
        format_time(deadline),
        *runner_backend_args(spec),
    ]
    env = [
        {"name": "LLMBATCH_SHARD_COUNT", "value": str(spec.parallelism)},
        {"name": "LLMBATCH_BATCHJOB", "value": owner},
        *storage_env(spec, config),
    ]
    if spec.model.chat_template:
        # The runner reads it from the environment (LLMBATCH_CHAT_TEMPLATE).
        env.append({"name": "LLMBATCH_CHAT_TEMPLATE", "value": literal(spec.model.chat_template)})
    container: dict[str, Any] = {
        "name": RUNNER_CONTAINER,
        "image": spec.runner_image or config.runner_image,
        "command": command,
        "env": env,
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
    }
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    return container


def _runner_pod_spec(spec: BatchJobSpec, container: dict[str, Any], grace: int) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        # podFailurePolicy requires Never: a failed shard becomes a new pod, counted per index.
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": grace,
        "enableServiceLinks": False,
        "containers": [container],
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = list(spec.tolerations)
    if spec.affinity:
        pod_spec["affinity"] = dict(spec.affinity)
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    return pod_spec


def _pod_failure_policy(action: str, codes: list[int]) -> dict[str, Any]:
    """Disruptions are ignored (preemption, node drain, eviction: not the pod's fault, not a
    retry); the exit ``codes`` (retrying cannot help) end the index or the Job at once."""
    return {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
            {
                "action": action,
                "onExitCodes": {
                    "containerName": RUNNER_CONTAINER,
                    "operator": "In",
                    "values": codes,
                },
            },
        ]
    }


def build_runner_job(
    batchjob: Mapping[str, Any], config: OperatorConfig, now: datetime
) -> dict[str, Any]:
    """The Indexed Job: completions = parallelism = spec.parallelism, one shard per index."""
    meta = batchjob["metadata"]
    spec = BatchJobSpec.model_validate(batchjob.get("spec") or {})
    owner = meta["name"]
    deadline = deadline_of(meta, spec)
    container = _runner_container(spec, config, owner, deadline)
    pod_spec = _runner_pod_spec(spec, container, config.termination_grace_seconds)
    labels = _labels(owner, "run")
    job_labels = dict(labels)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": run_job_name(owner),
            "namespace": meta.get("namespace"),
            "labels": job_labels,
            "ownerReferences": [owner_reference(batchjob)],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.parallelism,
            "parallelism": spec.parallelism,
            # No maxFailedIndexes: when a shard fails, the operator decides. A shard that
            # stopped at the deadline (43) must not get the others killed mid-way (they stop
            # by themselves and record their lines as expired); any other failed index fails
            # the batch and the operator suspends the Job to stop the remaining shards.
            "backoffLimitPerIndex": spec.max_retries,
            # Permanent error and deadline. Exit 44 (SIGTERM) is not listed: a deleted pod is
            # retried, and cancel suspends the Job, whose pod deletions Kubernetes does not
            # count as failures.
            "podFailurePolicy": _pod_failure_policy(
                "FailIndex", [int(ExitCode.PERMANENT), int(ExitCode.EXPIRED)]
            ),
            "activeDeadlineSeconds": active_deadline_seconds(
                deadline, now, config.deadline_grace_seconds
            ),
            # Kueue admits a Job by unsuspending it, so a queued Job starts suspended.
            "suspend": bool(spec.suspend or spec.queue_name),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def build_extra_run_job(
    batchjob: Mapping[str, Any], config: OperatorConfig, now: datetime, number: int
) -> dict[str, Any]:
    """The ``number``-th extra shard (spec.maxParallelism): the run Job's manifest with one
    index, its own name and shard number (parallelism + number - 1 of maxParallelism), and the
    same queue label, so Kueue admits it on its own. Its shard claims chunks of the same plan."""
    spec = BatchJobSpec.model_validate(batchjob.get("spec") or {})
    job = build_runner_job(batchjob, config, now)
    job["metadata"]["name"] = extra_run_job_name(batchjob["metadata"]["name"], number)
    job["spec"]["completions"] = job["spec"]["parallelism"] = 1
    container = job["spec"]["template"]["spec"]["containers"][0]
    shard, count = spec.parallelism + number - 1, spec.shard_ceiling
    container["command"] += ["--shard-index", str(shard), "--shard-count", str(count)]
    for env in container["env"]:
        if env["name"] == "LLMBATCH_SHARD_COUNT":
            env["value"] = str(count)
    return job


def _step_job(
    batchjob: Mapping[str, Any],
    config: OperatorConfig,
    role: str,
    name: str,
    command: list[str],
) -> dict[str, Any]:
    """A one-pod CPU Job of the batch (plan, finalize): the runner image with the storage
    settings, no GPU, off the shards' GPU nodes (their nodeSelector is not copied)."""
    meta = batchjob["metadata"]
    spec = BatchJobSpec.model_validate(batchjob.get("spec") or {})
    owner = meta["name"]
    container: dict[str, Any] = {
        "name": RUNNER_CONTAINER,
        "image": spec.runner_image or config.runner_image,
        "command": command,
        "env": [{"name": "LLMBATCH_BATCHJOB", "value": owner}, *storage_env(spec, config)],
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "containers": [container],
    }
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    labels = _labels(owner, role)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": dict(labels),
            "ownerReferences": [owner_reference(batchjob)],
        },
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def build_plan_job(
    batchjob: Mapping[str, Any], config: OperatorConfig, now: datetime
) -> dict[str, Any]:
    """One CPU pod that reads the input once and writes the plan under <output>/plan/.

    Exit 42 (the input cannot be used) fails the Job at once; other failures (storage
    unreachable) are retried a few times. Its log tail becomes the termination message (as
    every runner container's), so the operator can quote why it failed."""
    spec = BatchJobSpec.model_validate(batchjob.get("spec") or {})
    name = plan_job_name(batchjob["metadata"]["name"])
    job = _step_job(batchjob, config, "plan", name, _batch_args(spec, "plan"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    if spec.model.chat_template:
        # Prompt tokens are counted with the template the shards will use.
        container["env"].append(
            {"name": "LLMBATCH_CHAT_TEMPLATE", "value": literal(spec.model.chat_template)}
        )
    container["resources"] = {
        "requests": {"cpu": config.plan_cpu, "memory": config.plan_memory},
        "limits": {"memory": config.plan_memory},
    }
    deadline = deadline_of(batchjob["metadata"], spec)
    job["spec"].update(
        {
            "backoffLimit": config.plan_backoff_limit,
            # The input cannot be used: a retry reads the same bytes.
            "podFailurePolicy": _pod_failure_policy("FailJob", [int(ExitCode.PERMANENT)]),
            "activeDeadlineSeconds": active_deadline_seconds(
                deadline, now, config.deadline_grace_seconds
            ),
        }
    )
    return job


def build_finalize_job(
    batchjob: Mapping[str, Any], config: OperatorConfig, reason: FinalizeReason
) -> dict[str, Any]:
    """One CPU pod that merges the parts into output.jsonl, errors.jsonl and manifest.json."""
    spec = BatchJobSpec.model_validate(batchjob.get("spec") or {})
    command = [
        "llmbatch-runner",
        "finalize",
        "--input",
        literal(spec.input),
        "--output",
        literal(spec.output),
        "--shard-count",
        str(spec.parallelism),
        "--reason",
        reason,
    ]
    name = finalize_job_name(batchjob["metadata"]["name"])
    job = _step_job(batchjob, config, "finalize", name, command)
    job["metadata"]["annotations"] = {"llmbatch.io/finalize-reason": reason}
    job["spec"]["backoffLimit"] = config.finalize_backoff_limit
    return job
