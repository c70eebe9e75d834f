"""KubeRay's RayJob (ray.io/v1) as the operator sees it: where it lives in the API, the name and
pod labels of a BatchJob's RayJob, and what the RayJob and its pods say, read into the
``JobView`` the policies read of the run Job. So cancel, suspend, the deadline, failures and
finalize are one implementation for both forms; ``policy/rayjob.py`` words their messages.

KubeRay's lifecycle, as ray-operator/controllers/ray/rayjob_controller.go writes it:
``jobDeploymentStatus`` goes New ("") -> Initializing (the RayCluster starts) -> Running (the
submitter Job ran ``ray job submit``) -> Complete or Failed. Failed becomes Retrying instead
while ``backoffLimit`` allows (a new cluster, the entrypoint again), except for
DeadlineExceeded (``activeDeadlineSeconds``). ``spec.suspend`` moves Initializing or Running to
Suspending: KubeRay deletes the cluster and the submitter, then says Suspended; clearing it
goes back to New. ``jobStatus`` is the Ray job's own (PENDING, RUNNING, SUCCEEDED, FAILED,
STOPPED); KubeRay calls the RayJob Complete only once the submitter Job finished too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llmbatch.api.exitcodes import ExitCode
from llmbatch.controller.jobview import JobView, pod_facts
from llmbatch.controller.names import BATCHJOB_LABEL, ROLE_LABEL, child_name, label_value

RAYJOB_GROUP = "ray.io"
RAYJOB_VERSION = "v1"
RAYJOB_API_VERSION = f"{RAYJOB_GROUP}/{RAYJOB_VERSION}"
RAYJOB_KIND = "RayJob"
RAYJOB_PLURAL = "rayjobs"
RAYJOB_SUFFIX = "-ray"
# llmbatch.io/role of the RayJob and of its head and worker pods (KubeRay keeps template labels).
RAY_ROLE = "ray"
HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"

# Deployment states in which KubeRay has a cluster, or is making or removing one: its pods may
# be running the entrypoint. Suspended, Complete, Failed and New have none of ours running.
_CLUSTER_STATES = frozenset({"Initializing", "Running", "Waiting", "Suspending", "Retrying"})
# Ray's job supervisor: "Job entrypoint command failed with exit code 42, last available logs
# ..." (older Ray: "exit code 42. Last available logs ...").
_EXIT_CODE = re.compile(r"^Job entrypoint command failed with exit code (-?\d+)")
# How much of a RayJob's message reaches our status: its first line, and the log's last words.
FIRST_LINE = 300
LAST_WORDS = 400


def rayjob_name(owner: str) -> str:
    return child_name(owner, RAYJOB_SUFFIX)


def pod_labels(owner: str) -> dict[str, str]:
    """The labels our RayJob gives its head and worker pods (and the selector that finds them)."""
    return {BATCHJOB_LABEL: label_value(owner), ROLE_LABEL: RAY_ROLE}


RayJobState = Literal["Pending", "Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class RayJobOutcome:
    state: RayJobState
    message: str = ""


def rayjob_outcome(rayjob: Mapping[str, Any] | None) -> RayJobOutcome:
    """KubeRay's status as ours. Succeeded goes on to our finalize, Failed to our failure
    policy (KubeRay gives up only after backoffLimit retries). A Ray job that ended while
    KubeRay has not concluded yet (its submitter still finishing, or a retry coming) is still
    running: KubeRay's next word decides."""
    status = (rayjob or {}).get("status") or {}
    deployment = str(status.get("jobDeploymentStatus") or "")
    job = str(status.get("jobStatus") or "")
    if deployment == "Complete" and job == "SUCCEEDED":
        return RayJobOutcome("Succeeded")
    if deployment in ("Complete", "Failed"):
        # Complete with FAILED or STOPPED: the Ray job ended without success.
        reason = str(status.get("reason") or job or deployment)
        message = str(status.get("message") or "").strip()
        first = message.split("\n", 1)[0][:FIRST_LINE].rstrip(":. ")
        return RayJobOutcome("Failed", f"{reason}: {first}" if first else reason)
    if deployment == "Running" and job not in ("", "PENDING"):
        return RayJobOutcome("Running")
    if deployment == "Retrying":
        return RayJobOutcome("Pending", "retrying on a new Ray cluster")
    return RayJobOutcome("Pending", deployment or "waiting for KubeRay")


def entrypoint_exit_code(message: str) -> int | None:
    """The runner's exit code when the Ray job failed because its entrypoint exited."""
    found = _EXIT_CODE.match(message.strip())
    return int(found.group(1)) if found else None


def describe(status: Mapping[str, Any]) -> str:
    """KubeRay's state in a few words, e.g. ``Running, Ray job RUNNING``."""
    deployment = str(status.get("jobDeploymentStatus") or "New")
    job = str(status.get("jobStatus") or "")
    return f"{deployment}, Ray job {job}" if job else deployment


def view_rayjob(
    rayjob: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = ()
) -> JobView:
    """The RayJob as the one shard it runs (index 0): complete when KubeRay says Complete and
    SUCCEEDED, failed when KubeRay gave up; active while KubeRay has a cluster (or is removing
    one), so a stop waits until KubeRay says Suspended and no pod of ours is left. The runner's
    exit code, when the entrypoint's failure names it, is the shard's: 42 fails the batch at
    once (even while KubeRay would retry), 43 says the deadline passed."""
    if not rayjob:
        return JobView()
    status = rayjob.get("status") or {}
    outcome = rayjob_outcome(rayjob)
    deployment = str(status.get("jobDeploymentStatus") or "")
    message = str(status.get("message") or "")
    code = entrypoint_exit_code(message)
    failed = outcome.state == "Failed"
    complete = outcome.state == "Succeeded"
    # Head and workers: each pod's GPUs are counted by its role (head none by default).
    facts = pod_facts(pods, (HEAD_CONTAINER, WORKER_CONTAINER))
    logs = message.strip().split("\n", 1)[1] if "\n" in message.strip() else ""
    return JobView(
        exists=True,
        suspended=bool((rayjob.get("spec") or {}).get("suspend")),
        complete=complete,
        failed=failed,
        failed_reason=str(status.get("reason") or status.get("jobStatus") or "") if failed else "",
        failed_message=outcome.message if failed else "",
        active=1 if deployment in _CLUSTER_STATES else 0,
        live_pods=facts.live,
        running_pods=facts.running,
        completed_indexes=frozenset({0}) if complete else frozenset(),
        failed_indexes=frozenset({0}) if failed or code == ExitCode.PERMANENT else frozenset(),
        exit_codes=frozenset({code}) if code is not None else frozenset(),
        restarts={0: int(status.get("failed") or 0)},
        running_indexes=frozenset({0}) if outcome.state == "Running" else frozenset(),
        unschedulable=facts.unschedulable,
        termination_message=logs.strip()[-LAST_WORDS:],
        pod_spans=facts.spans,
        state=describe(status),
    )
