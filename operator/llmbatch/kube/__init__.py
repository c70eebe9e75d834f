"""The one Kubernetes client of the product: the operator, the gateway and the CLI call the
API through it (the sandbox has its own, it is not product code).

- ``load_connection`` finds where the API is and how to authenticate: an explicit kubeconfig,
  $KUBECONFIG, ~/.kube/config, or the in-cluster service account; tokens, token files,
  client certificates and CAs, and, through the official client, exec plugins and
  auth-providers, with rotating tokens re-read.
- ``AsyncKube`` (operator, gateway) and ``Kube`` (CLI) send plain JSON over one request core:
  bodies stay dicts, so builders' output goes to the API unchanged and merge patches and
  resourceVersion preconditions are explicit; a 429, or a 5xx with Retry-After, is waited out
  as the server asks (capped, a few tries) for every caller; ``AsyncKube.stream`` reads a watch.
- ``KubeError`` is the one error: ``status``, ``message``, ``reason``, ``retry_after``,
  ``not_found``, ``conflict`` (``NotFound`` and ``Conflict`` are the same type, for
  ``except``). A connection failure stays httpx's own ``TransportError``: no server answered.

Why httpx and not the ``kubernetes`` package's ApiClient: httpx has a synchronous and an
asynchronous client with the same request and response types, so one core serves both faces;
the async face runs on the operator's and gateway's event loop (the ApiClient is synchronous
and needed a thread pool), streams a watch line by line, and takes an injected transport, which
is how the gateway's tests serve the API from memory (tests/gateway/memkube.py). The
``kubernetes`` package stays a dependency only for exec plugins and auth-providers, imported
when a kubeconfig needs one (it costs a process about 10 MB).

BatchJob paths come from ``llmbatch.api.gvk``; callers keep their own few calls in thin
facades (``controller/kube.py``, ``gateway/kube.py``, ``cli/kube.py``).
"""

from __future__ import annotations

from llmbatch.kube.async_client import AsyncKube
from llmbatch.kube.config import find_kubeconfig, in_cluster, load_connection
from llmbatch.kube.connection import Connection
from llmbatch.kube.core import JSON, MERGE_PATCH
from llmbatch.kube.errors import Conflict, KubeError, NotFound
from llmbatch.kube.kubeconfig import from_kubeconfig
from llmbatch.kube.retry import MAX_RETRY_AFTER, RETRY_AFTER_ATTEMPTS, parse_retry_after
from llmbatch.kube.sync_client import Kube

__all__ = [
    "JSON",
    "MAX_RETRY_AFTER",
    "MERGE_PATCH",
    "RETRY_AFTER_ATTEMPTS",
    "AsyncKube",
    "Conflict",
    "Connection",
    "Kube",
    "KubeError",
    "NotFound",
    "find_kubeconfig",
    "from_kubeconfig",
    "in_cluster",
    "load_connection",
    "parse_retry_after",
]
