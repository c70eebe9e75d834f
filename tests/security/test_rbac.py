"""The chart's operator RBAC grants exactly what the operator calls.

The operator has no declared table of its API calls, so the table is derived here:

- its own calls: ``llmbatch/controller/kube.py`` (``KubeApi``) is the controller's only way to
  the API (a test below holds that: no other controller module imports an HTTP or Kubernetes
  client, and ``KubeApi`` has no generic request method). Every public method of ``KubeApi`` is
  called here over a transport that records each request; the path gives group and resource
  (and subresource), the method and whether the path names one object give the verb. A test
  fails when ``KubeApi`` gains a method this table does not call, so a new call cannot escape.
  Discovery reads (``/apis/<group>/<version>``, is KubeRay installed) need no rule: Kubernetes'
  default ClusterRole ``system:discovery`` grants them to every authenticated client;
- kopf's calls, which the operator makes through the framework, from kopf's own RBAC
  documentation and the handlers ``controller/handlers.py`` registers: watching BatchJobs and
  the operator's Jobs (list, watch), kopf's bookkeeping in BatchJob annotations and its
  finalizer (patch), Events (create), and the CRD and namespace scans (list, watch).

The rendered ClusterRole/Role rules (helm-python-sdk, as tests/unit/test_chart.py renders
them) must cover that table (else the operator breaks) and grant nothing beyond it.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmbatch.controller.kube import KubeApi
from llmbatch.kube import Connection
from tests.unit.test_chart import render

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "llmbatch"
KUBE = PACKAGE / "controller" / "kube.py"
Permission = tuple[str, str, str]  # (apiGroup, resource, verb)

KOPF_NEEDS: set[Permission] = {
    ("llmbatch.io", "batchjobs", "list"),
    ("llmbatch.io", "batchjobs", "watch"),
    ("llmbatch.io", "batchjobs", "patch"),  # progress/diffbase annotations, finalizer
    ("batch", "jobs", "list"),  # @kopf.on.event("batch", "v1", "jobs")
    ("batch", "jobs", "watch"),
    ("", "events", "create"),  # kopf.event() and kopf's handler-failure events
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"),  # kopf's namespace observer (kopf's RBAC docs)
    ("", "namespaces", "watch"),
}

# Every public method of KubeApi that talks to the API, with arguments to call it with.
JOB = {"metadata": {"name": "j"}}
API_CALLS: dict[str, tuple[Any, ...]] = {
    "get_job": ("ns", "j"),
    "create_job": ("ns", JOB),
    "patch_job": ("ns", "j", {"spec": {"suspend": True}}),
    "delete_job": ("ns", "j"),
    "list_pods": ("ns", "j"),
    "list_labelled_pods": ("ns", {"llmbatch.io/batchjob": "b", "llmbatch.io/role": "ray"}),
    "has_rayjob_api": (),
    "get_rayjob": ("ns", "b-ray"),
    "create_rayjob": ("ns", JOB),
    "patch_rayjob": ("ns", "b-ray", {"spec": {"suspend": True}}),
    "delete_rayjob": ("ns", "b-ray"),
    "get_secret": ("ns", "s"),
    "patch_batchjob_status": ("ns", "b", {"phase": "Queued"}),
    "annotate_batchjob": ("ns", "b", {"llmbatch.io/notify": "{}"}),
}
# Public members that make no API call.
LIFECYCLE = {"close", "aclose", "throttled"}


def is_discovery(path: str) -> bool:
    """``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>`` or ``/apis/<group>/<version>``."""
    parts = path.strip("/").split("/")
    return len(parts) <= (2 if parts[0] == "api" else 3)


def permission_of(method: str, path: str) -> Permission:
    parts = path.strip("/").split("/")
    if parts[0] == "api":  # /api/v1/...
        group, rest = "", parts[2:]
    else:  # /apis/<group>/<version>/...
        group, rest = parts[1], parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    resource, named, sub = rest[0], len(rest) >= 2, rest[2] if len(rest) >= 3 else None
    verb = {
        "GET": "get" if named else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }[method]
    return group, f"{resource}/{sub}" if sub else resource, verb


DISCOVERED: set[tuple[str, str]] = set()


async def _record_calls() -> set[Permission]:
    sent: set[Permission] = set()

    def answer(request: httpx.Request) -> httpx.Response:
        if is_discovery(request.url.path):
            DISCOVERED.add((request.method, request.url.path))
        else:
            sent.add(permission_of(request.method, request.url.path))
        return httpx.Response(200, json={"items": []})

    api = KubeApi(Connection("http://recorder"), transport=httpx.MockTransport(answer))
    try:
        for name, args in API_CALLS.items():
            await getattr(api, name)(*args)
    finally:
        await api.aclose()
    return sent


def operator_calls() -> set[Permission]:
    return asyncio.run(_record_calls())


def test_every_api_method_of_the_operator_is_in_the_table() -> None:
    public = {name for name in vars(KubeApi) if not name.startswith("_")}
    assert public - LIFECYCLE == set(API_CALLS), "call the new KubeApi method in API_CALLS"


def test_the_extraction_reads_the_kube_layer() -> None:
    calls = operator_calls()
    assert ("batch", "jobs", "create") in calls
    assert ("llmbatch.io", "batchjobs/status", "patch") in calls
    assert ("", "pods", "list") in calls
    # The KubeRay form: exactly what the operator does to its RayJob (no list or watch: the
    # daemon reads its own RayJob by name each pass).
    assert {perm for perm in calls if perm[0] == "ray.io"} == {
        ("ray.io", "rayjobs", verb) for verb in ("get", "create", "patch", "delete")
    }
    assert permission_of("GET", "/api/v1/namespaces/{}/secrets/{}") == ("", "secrets", "get")


def test_discovery_is_only_read() -> None:
    """Discovery needs no rule in the chart (system:discovery), and the operator only reads it:
    whether KubeRay's RayJob API exists."""
    operator_calls()
    assert {("GET", "/apis/ray.io/v1")} == DISCOVERED
    assert permission_of("GET", "/apis/ray.io/v1/namespaces/n/rayjobs/x") == (
        "ray.io",
        "rayjobs",
        "get",
    )


def test_kube_py_is_the_only_api_client_in_the_controller() -> None:
    """The table is complete only if no other controller module calls the API directly. The
    one client's errors may be imported anywhere; its clients only by kube.py."""
    clients = {
        "kubernetes",
        "aiohttp",
        "httpx",
        "urllib",
        "requests",
        "pykube",
        "kubernetes_asyncio",
    }
    errors_only = {"KubeError", "NotFound", "Conflict"}
    for path in sorted((PACKAGE / "controller").glob("*.py")):
        if path == KUBE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                assert name.split(".")[0] not in clients, f"{path.name} imports {name}"
                if name == "llmbatch.kube" or name.startswith("llmbatch.kube."):
                    assert name.rsplit(".", 1)[1] in errors_only, f"{path.name} imports {name}"


def granted(values: dict[str, object]) -> dict[str, set[Permission]]:
    """The operator's permissions per role name in the rendered chart."""
    objects = render(values)
    roles: dict[str, set[Permission]] = {}
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "Role"):
            continue
        if "gateway" in obj["metadata"]["name"]:
            continue  # the gateway's own role is not the operator's
        perms = roles.setdefault(obj["metadata"]["name"], set())
        for rule in obj.get("rules") or []:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        perms.add((group, resource, verb))
    return roles


SCOPES = {
    "cluster": {},
    "namespaced": {"rbac": {"scope": "namespaced"}, "watchNamespaces": ["team-a"]},
}


def needed() -> set[Permission]:
    return operator_calls() | KOPF_NEEDS


@pytest.mark.parametrize("scope", SCOPES)
def test_chart_grants_everything_the_operator_calls(scope: str) -> None:
    perms = set().union(*granted(SCOPES[scope]).values())
    optional = {("", "namespaces", "list"), ("", "namespaces", "watch")}  # kopf falls back
    missing = needed() - perms - (optional if scope == "namespaced" else set())
    assert missing == set(), f"the operator would be forbidden: {sorted(missing)}"


@pytest.mark.parametrize("scope", SCOPES)
def test_chart_grants_nothing_beyond_what_the_operator_calls(scope: str) -> None:
    perms = set().union(*granted(SCOPES[scope]).values())
    extra = perms - needed()
    assert extra == set(), f"granted but never used: {sorted(extra)}"
