"""An in-memory stand-in for the few Kubernetes API calls the gateway makes, served as an httpx
transport under the one client: ``MemKube().client(namespace)`` is the gateway's KubeClient over
it, so the client's own request, error and retry code runs as in production. It serves
BatchJobs (create, get, list by label, merge patch, conditional on a resourceVersion in the
patch) and Secrets/ConfigMaps (get, create,
conditional replace) with the semantics the gateway relies on: 404 on a missing object, 409 on
create of an existing one and on a replace whose resourceVersion is stale, a new
resourceVersion on every write.

The fast tests use it; the slow tests run the same gateway against the sandbox's real API
emulator."""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

import httpx

from llmbatch.gateway.kube import KubeClient
from llmbatch.kube import Connection

_PATH = re.compile(
    r"^/(?:apis/llmbatch\.io/v1alpha1|api/v1)/namespaces/(?P<ns>[^/]+)/"
    r"(?P<kind>batchjobs|secrets|configmaps)(?:/(?P<name>[^/]+))?$"
)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _status(code: int, reason: str, message: str) -> httpx.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }
    return httpx.Response(code, json=body)


class MemKube(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        self.requests = 0

    # --- helpers for tests ----------------------------------------------------------------
    def client(self, namespace: str = "default") -> KubeClient:
        """The gateway's client, talking to this stand-in."""
        return KubeClient(Connection("http://memkube"), namespace, transport=self)

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Write a BatchJob's status the way the operator would."""
        with self._lock:
            obj = self.objects[(namespace, "batchjobs", name)]
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = str(next(self._versions))

    def get(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, kind, name))

    # --- the transport --------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        match = _PATH.match(request.url.path)
        if match is None:
            return _status(404, "NotFound", f"the server could not find {request.url.path}")
        ns, kind, name = match.group("ns"), match.group("kind"), match.group("name")
        body = json.loads(await request.aread() or b"null")
        with self._lock:
            return self._handle(request.method, ns, kind, name, body, dict(request.url.params))

    def _handle(
        self, method: str, ns: str, kind: str, name: str | None, body: Any, params: dict[str, str]
    ) -> httpx.Response:
        if params.get("watch") in ("1", "true"):
            # No watch here: the gateway must fall back to reading from the API.
            return _status(405, "MethodNotAllowed", "watch is not served by this stand-in")
        if name is None and method == "GET":
            items = [
                o
                for (n, k, _), o in sorted(self.objects.items())
                if n == ns and k == kind and _selected(o, params.get("labelSelector"))
            ]
            return httpx.Response(
                200, json={"kind": "List", "items": items, "metadata": {"resourceVersion": "1"}}
            )
        if name is None and method == "POST":
            name = body["metadata"]["name"]
            if (ns, kind, name) in self.objects:
                return _status(409, "AlreadyExists", f'{kind} "{name}" already exists')
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            meta.update(
                namespace=ns,
                uid=f"uid-{name}",
                generation=1,
                resourceVersion=str(next(self._versions)),
                creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            self.objects[(ns, kind, name)] = obj
            return httpx.Response(201, json=obj)
        assert name is not None
        current = self.objects.get((ns, kind, name))
        if current is None:
            return _status(404, "NotFound", f'{kind} "{name}" not found')
        if method == "GET":
            return httpx.Response(200, json=current)
        if method == "PUT":
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", "the object has been modified")
            obj = copy.deepcopy(body)
            obj["metadata"] = {
                **current["metadata"],
                **obj.get("metadata", {}),
                "resourceVersion": str(next(self._versions)),
            }
            self.objects[(ns, kind, name)] = obj
            return httpx.Response(200, json=obj)
        if method == "PATCH":
            # A resourceVersion in the patch is a precondition, as on the real API server.
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", "the object has been modified")
            obj = _merge(current, body)
            obj["metadata"]["resourceVersion"] = str(next(self._versions))
            self.objects[(ns, kind, name)] = obj
            return httpx.Response(200, json=obj)
        return _status(405, "MethodNotAllowed", method)


def _selected(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True
