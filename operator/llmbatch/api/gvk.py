"""Group, version, kind and plural of the BatchJob resource: the names every part (CRD
generator, operator, gateway, CLI, chart) uses to find it, defined once."""

from __future__ import annotations

GROUP = "llmbatch.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "BatchJob"
LIST_KIND = f"{KIND}List"
PLURAL = "batchjobs"
SINGULAR = "batchjob"
SHORT_NAMES = ("bj",)
# Labels and annotations we own live under the group's name.
LABEL_PREFIX = GROUP


def batchjobs_path(namespace: str, name: str | None = None) -> str:
    """The REST path of BatchJobs in a namespace (or of one BatchJob)."""
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base
