"""Deterministic names of a BatchJob's children.

The same BatchJob always maps to the same Job names, so a restarted operator finds what it
created before and a second create answers 409 instead of making a duplicate.
"""

from __future__ import annotations

import hashlib
import re

# Job names end up in the pod label job-name and in Indexed pod hostnames: a DNS label.
MAX_NAME = 63
RUN_SUFFIX = "-run"
FINALIZE_SUFFIX = "-finalize"
PLAN_SUFFIX = "-plan"

BATCHJOB_LABEL = "llmbatch.io/batchjob"
ROLE_LABEL = "llmbatch.io/role"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "llmbatch-operator"


def child_name(owner: str, suffix: str) -> str:
    """``<owner><suffix>``, or a truncated owner plus a hash of the full name when that would
    not be a DNS label (too long, or dots from a DNS-subdomain BatchJob name)."""
    clean = owner.replace(".", "-")
    candidate = f"{clean}{suffix}"
    if len(candidate) <= MAX_NAME and clean == owner:
        return candidate
    digest = hashlib.sha256(owner.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(suffix) - len(digest) - 1
    head = clean[:keep].rstrip("-")
    return f"{head}-{digest}{suffix}"


def run_job_name(owner: str) -> str:
    return child_name(owner, RUN_SUFFIX)


def extra_run_job_name(owner: str, number: int) -> str:
    """The ``number``-th extra shard (1, 2, ...) the scaling policy adds: ``<owner>-run-<n>``."""
    return child_name(owner, f"{RUN_SUFFIX}-{number}")


def finalize_job_name(owner: str) -> str:
    return child_name(owner, FINALIZE_SUFFIX)


def plan_job_name(owner: str) -> str:
    return child_name(owner, PLAN_SUFFIX)


def label_value(owner: str) -> str:
    """A label value (at most 63 characters) that identifies the BatchJob."""
    if len(owner) <= MAX_NAME and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", owner):
        return owner
    return child_name(owner, "")
