"""The sandbox's API emulator in a thread of the test process, for the client's tests: a
namespace, the BatchJob CRD, and injected faults (429, 5xx with or without Retry-After)."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from llmbatch.api.crd import build_crd
from llmbatch.api.gvk import batchjobs_path
from llmbatch_sandbox.apiserver.threaded import ThreadedApiServer


def send(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # our emulator on localhost
        raw = response.read()
        return json.loads(raw) if raw else None


@contextlib.contextmanager
def api_server(namespace: str) -> Iterator[str]:
    """The emulator's URL, with ``namespace`` and the BatchJob CRD in place."""
    with ThreadedApiServer() as threaded:
        url = threaded.url
        send(url, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", build_crd())
        send(url, "POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        yield url


def create_batchjob(url: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    # The emulator may need a moment to serve a freshly registered CRD.
    for _ in range(50):
        try:
            created: dict[str, Any] = send(url, "POST", batchjobs_path(namespace), body)
            return created
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        time.sleep(0.1)
    raise AssertionError("the BatchJob CRD was never served")


@contextlib.contextmanager
def fault(url: str, namespace: str, **spec: Any) -> Iterator[None]:
    """Answers with ``spec['code']`` (``times`` times, matching ``verb`` and ``resource``,
    with ``retry_after`` when given) while the block runs."""
    send(url, "POST", "/sandbox/faults", {"namespace": namespace, **spec})
    try:
        yield
    finally:
        send(url, "DELETE", "/sandbox/faults")
