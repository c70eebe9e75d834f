"""Fixtures for the API emulator's conformance tests.

By default a ``ThreadedApiServer`` runs for the whole module; with LLMBATCH_E2E_KUBECONFIG set
the same tests run against that cluster instead (tests marked ``sandbox_only`` then skip).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config

from llmbatch_sandbox.apiserver import ThreadedApiServer, write_kubeconfig

JSON = dict[str, Any]
TEST_GROUP = "test.llmbatch.io"


@dataclass
class Cluster:
    kubeconfig: Path
    api: client.ApiClient
    server: ThreadedApiServer | None

    @property
    def url(self) -> str:
        return str(self.api.configuration.host)

    def _pool(self) -> urllib3.PoolManager:
        cfg = self.api.configuration
        return urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED" if cfg.verify_ssl and cfg.ssl_ca_cert else "CERT_NONE",
            ca_certs=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
        )

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.api.configuration.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        headers.update(extra or {})
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | JSON | list[Any] | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> urllib3.BaseHTTPResponse:
        """One HTTP request with the cluster's credentials; the raw response."""
        data: bytes | None
        if isinstance(body, dict | list):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        hdrs = self._headers(headers)
        if data is not None:
            hdrs["Content-Type"] = content_type
        return self._pool().request(
            method, self.url + path, body=data, headers=hdrs, timeout=timeout, retries=False
        )

    def raw(
        self,
        method: str,
        path: str,
        body: bytes | str | JSON | list[Any] | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        """One HTTP request; the status code and the decoded JSON body (or text)."""
        resp = self.request(method, path, body, content_type, headers, timeout)
        text = resp.data.decode()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text

    def watch(
        self,
        path: str,
        max_events: int = 1000,
        timeout: float = 15.0,
        headers: dict[str, str] | None = None,
    ) -> list[JSON]:
        """Events of a watch (pass timeoutSeconds in ``path``), up to ``max_events``."""
        resp = self._pool().request(
            "GET",
            self.url + path,
            headers=self._headers(headers),
            preload_content=False,
            timeout=urllib3.Timeout(connect=5, read=timeout),
            retries=False,
        )
        events: list[JSON] = []
        buffer = b""
        try:
            for chunk in resp.stream(1024, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        events.append(json.loads(line))
                    if len(events) >= max_events:
                        return events
        finally:
            resp.release_conn()
        return events


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get("LLMBATCH_E2E_KUBECONFIG")
    if external:
        api = config.new_client_from_config(config_file=external)
        yield Cluster(Path(external), api, None)
        return
    with ThreadedApiServer(history_size=20000) as server:
        kubeconfig = write_kubeconfig(server.url, tmp_path_factory.mktemp("kube") / "config")
        api = config.new_client_from_config(config_file=str(kubeconfig))
        yield Cluster(kubeconfig, api, server)


@pytest.fixture
def sandbox(cluster: Cluster) -> ThreadedApiServer:
    """The emulator itself, for tests of behaviour a real cluster does not have."""
    if cluster.server is None:
        pytest.skip("sandbox-only: needs the emulator, not a real cluster")
    return cluster.server


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def widget_crd(group: str = TEST_GROUP, plural: str = "widgets", kind: str = "Widget") -> JSON:
    """A CRD exercising every schema feature the emulator implements."""
    spec_schema: JSON = {
        "type": "object",
        "required": ["size"],
        "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
            "name": {"type": "string", "minLength": 2, "maxLength": 8, "pattern": "^[a-z]+$"},
            "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
            "labels": {
                "type": "object",
                "maxProperties": 2,
                "additionalProperties": {"type": "string"},
            },
            "model": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "model is immutable"}
                ],
                "properties": {"name": {"type": "string"}},
            },
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "nested": {
                "type": "object",
                "properties": {"level": {"type": "integer", "default": 3}},
                "default": {},
            },
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "shortNames": [kind.lower()[:3] + "x"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                        {
                            "name": "Model",
                            "type": "string",
                            "jsonPath": ".spec.model.name",
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": spec_schema,
                                "status": {
                                    "type": "object",
                                    "properties": {
                                        "phase": {"type": "string"},
                                        "count": {"type": "integer"},
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def crd_established(cluster: Cluster, name: str) -> bool:
    ext = client.ApiextensionsV1Api(cluster.api)
    crd = ext.read_custom_resource_definition(name)
    conditions = (crd.status.conditions or []) if crd.status else []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


@pytest.fixture(scope="session")
def widgets(cluster: Cluster) -> Iterator[str]:
    """The test CRD, installed once; yields its plural."""
    ext = client.ApiextensionsV1Api(cluster.api)
    crd = widget_crd()
    name = crd["metadata"]["name"]
    status, _ = cluster.raw("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status in (201, 409)
    wait_for(lambda: crd_established(cluster, name), what="CRD established")
    wait_for(lambda: cluster.raw("GET", f"/apis/{TEST_GROUP}/v1")[0] == 200, what="CRD served")
    yield "widgets"
    ext.delete_custom_resource_definition(name)
