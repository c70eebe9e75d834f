"""The gateway's security promises, checked over the routes the app really has (enumerated from
the FastAPI app, so a route added later is covered without editing this file):

- every /v1 route refuses missing, malformed, unknown and revoked keys with 401 in OpenAI's
  shape, before doing anything;
- every route that takes an id answers another tenant's id exactly as an unknown id (404);
- keys appear neither in logs nor in answers, and are stored only hashed.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from llmbatch.gateway import ids
from llmbatch.gateway.app import create_app
from llmbatch.gateway.auth import authenticate
from llmbatch.storage import get_store
from tests.gateway.conftest import NAMESPACE, GatewayEnv
from tests.gateway.memkube import MemKube

# Outside /v1 and meant to be open: probes, metrics, the API description.
PUBLIC = {
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with {params}

    def params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    def url(self, **values: str) -> str:
        return self.path.format(**values)


def app_routes(env: GatewayEnv) -> list[APIRoute]:
    """The routes of an app built exactly as the server's (building connects to nothing)."""
    kube = MemKube().client(NAMESPACE)
    store = get_store(f"s3://{env.bucket}/", env.settings)
    app = create_app(env.config, kube, store)
    return [r for r in app.routes if isinstance(r, APIRoute)]


def v1_routes(env: GatewayEnv) -> list[Route]:
    found = []
    for route in app_routes(env):
        if route.path.startswith("/v1"):
            found += [Route(method, route.path) for method in sorted(route.methods)]
    return found


def _dependency_calls(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _dependency_calls(dep)


def test_every_route_is_public_by_intent_or_authenticated(gateway_env: GatewayEnv) -> None:
    routes = app_routes(gateway_env)
    assert len([r for r in routes if r.path.startswith("/v1")]) >= 8
    for route in routes:
        if route.path in PUBLIC:
            continue
        assert route.path.startswith("/v1"), f"{route.path} is neither /v1 nor a known probe"
        assert authenticate in set(_dependency_calls(route.dependant)), route.path


def _fill(route: Route) -> str:
    values = {
        "file_id": "file-0000000000000000000000aa",
        "batch_id": "batch_0000000000000000000000aa",
    }
    return route.url(**{p: values.get(p, "x") for p in route.params()})


@pytest.fixture(scope="module")
def revoked_key(gateway_env: GatewayEnv) -> str:
    key = gateway_env.key("revoked-tenant")
    key_id = key.split("-")[2]
    assert gateway_env.keystore_call(lambda store: store.revoke(key_id)) is True
    return key


def bad_credentials(valid: str, revoked: str) -> list[tuple[str, dict[str, str]]]:
    return [
        ("missing", {}),
        ("empty", {"Authorization": ""}),
        ("bearer-only", {"Authorization": "Bearer"}),
        ("basic", {"Authorization": "Basic " + base64.b64encode(b"user:pass").decode()}),
        ("wrong-scheme-valid-key", {"Authorization": f"Token {valid}"}),
        ("unknown", {"Authorization": "Bearer sk-lb-" + secrets.token_hex(20)}),
        ("truncated", {"Authorization": f"Bearer {valid[:-1]}"}),
        ("extended", {"Authorization": f"Bearer {valid}x"}),
        ("revoked", {"Authorization": f"Bearer {revoked}"}),
        ("injection", {"Authorization": "Bearer ' OR 1=1 --"}),
        ("api-key-header", {"api-key": valid}),
    ]


def test_every_v1_route_refuses_bad_keys(gateway_env: GatewayEnv, revoked_key: str) -> None:
    valid = gateway_env.key("auth-probe")
    routes = v1_routes(gateway_env)
    objects_before = len(gateway_env.kube.objects)
    requests_before = gateway_env.kube.requests
    with httpx.Client(base_url=gateway_env.url, timeout=30) as http:
        for route in routes:
            for label, headers in bad_credentials(valid, revoked_key):
                body = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions"}
                response = http.request(route.method, _fill(route), headers=headers, json=body)
                where = f"{route.method} {route.path} with {label} credentials"
                assert response.status_code == 401, f"{where}: {response.status_code}"
                error = response.json()["error"]
                assert error["type"] == "authentication_error", where
                assert valid not in response.text and revoked_key not in response.text, where
    # Nothing was created by the refused calls (reading the key Secret is allowed).
    assert len(gateway_env.kube.objects) == objects_before
    assert gateway_env.kube.requests >= requests_before


# --- tenant isolation ------------------------------------------------------------------------


def _batch_file(n: int = 2) -> bytes:
    lines = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}]},
        }
        for i in range(n)
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


@dataclass
class Owned:
    file_id: str
    batch_id: str
    output_file_id: str
    key: str


@pytest.fixture(scope="module")
def owned(gateway_env: GatewayEnv) -> Owned:
    """A tenant's upload and batch, with the batch finished (status as the operator writes it)
    and its output file in storage."""
    key = gateway_env.key("owner")
    with gateway_env.http(key) as http:
        uploaded = http.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={"file": ("in.jsonl", _batch_file(), "application/jsonl")},
        )
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        created = http.post(
            "/v1/batches",
            json={
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert created.status_code == 200, created.text
        batch_id = created.json()["id"]
        name = gateway_env.batch_name(batch_id)
        job = gateway_env.kube.get(NAMESPACE, "batchjobs", name)
        assert job is not None
        output = job["spec"]["output"].rstrip("/")
        store = get_store(f"s3://{gateway_env.bucket}/", gateway_env.settings)
        store.write_bytes(f"{output}/output.jsonl", b'{"id":"x"}\n')
        store.write_bytes(f"{output}/errors.jsonl", b"")
        gateway_env.kube.set_status(
            NAMESPACE,
            name,
            {
                "phase": "Succeeded",
                "outputFile": f"{output}/output.jsonl",
                "errorFile": f"{output}/errors.jsonl",
                "requestCounts": {"total": 2, "completed": 2, "failed": 0},
            },
        )
        out_id = ids.output_file_id(batch_id, "output")
        # The ids are real: their owner reads them.
        assert http.get(f"/v1/files/{file_id}").status_code == 200
        assert http.get(f"/v1/batches/{batch_id}").status_code == 200
        assert http.get(f"/v1/files/{out_id}/content").status_code == 200
    return Owned(file_id, batch_id, out_id, key)


ID_BODY_ROUTES = {"/v1/batches", "/v1/batches/validate", "/v1/batches/cost-estimate"}


def test_every_id_taking_route_hides_other_tenants(gateway_env: GatewayEnv, owned: Owned) -> None:
    routes = v1_routes(gateway_env)
    with_ids = [r for r in routes if r.params()]
    with_body_ids = [r for r in routes if r.method == "POST" and r.path in ID_BODY_ROUTES]
    assert {p for r in with_ids for p in r.params()} <= {"file_id", "batch_id"}, (
        "a route takes an id this test does not know how to fill: extend it"
    )
    with gateway_env.http(gateway_env.key("intruder")) as http:
        for route in with_ids:
            file_ids = (
                [owned.file_id, owned.output_file_id] if "file_id" in route.params() else [""]
            )
            for file_id in file_ids:
                path = route.url(file_id=file_id, batch_id=owned.batch_id)
                response = http.request(route.method, path)
                assert response.status_code == 404, f"{route.method} {path}: {response.text}"
                unknown = route.url(
                    file_id=file_id[:-2] + "zz" if file_id else "",
                    batch_id=owned.batch_id[:-2] + "zz",
                )
                # Indistinguishable from an id that does not exist (same shape, same code).
                other = http.request(route.method, unknown)
                assert other.status_code == 404
                assert response.json()["error"]["type"] == other.json()["error"]["type"]
        for route in with_body_ids:
            for file_id in (owned.file_id, owned.output_file_id):
                body: dict[str, Any] = {"input_file_id": file_id}
                if route.path == "/v1/batches":
                    body.update(endpoint="/v1/chat/completions", completion_window="24h")
                response = http.post(route.path, json=body)
                assert response.status_code == 404, f"POST {route.path}: {response.text}"
        # Lists show nothing of the owner's.
        assert owned.file_id not in http.get("/v1/files").text
        assert owned.batch_id not in http.get("/v1/batches").text
    # The owner's batch was neither cancelled nor changed, and the file not deleted.
    job = gateway_env.kube.get(NAMESPACE, "batchjobs", gateway_env.batch_name(owned.batch_id))
    assert job is not None and not job["spec"].get("cancel")
    with gateway_env.http(owned.key) as http:
        assert http.get(f"/v1/files/{owned.file_id}").status_code == 200
        assert http.get(f"/v1/files/{owned.file_id}/content").status_code == 200


# --- keys never leak -------------------------------------------------------------------------


def test_keys_never_in_logs_answers_or_storage(
    gateway_env: GatewayEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    valid = gateway_env.key("leak-check")
    revoked = gateway_env.key("leak-check")
    gateway_env.keystore_call(lambda store: store.revoke(revoked.split("-")[2]))
    # sk-lb-<hex id>-<secret>: the secret is token_urlsafe and may itself contain "-", so it is
    # everything after the third dash (rsplit would take a short tail that can match by chance).
    secret_parts = {valid, revoked, valid.split("-", 3)[3], revoked.split("-", 3)[3]}
    assert all(len(part) >= 32 for part in secret_parts)
    answers = []
    for key in (valid, revoked, valid + "x", valid[:-3]):
        with gateway_env.http(key) as http:
            for method, path in (
                ("GET", "/v1/batches"),
                ("GET", "/v1/files/file-nope"),
                ("POST", "/v1/batches"),
                ("POST", "/v1/files"),
                ("GET", "/v1/nowhere"),
            ):
                response = http.request(method, path, json={"x": key})
                answers.append(response.text + json.dumps(dict(response.headers)))
    logged = caplog.text + "".join(
        json.dumps(getattr(r, "__dict__", {}), default=str) for r in caplog.records
    )
    stored = json.dumps(list(gateway_env.kube.objects.values()))
    decoded = []
    for obj in gateway_env.kube.objects.values():
        for value in (obj.get("data") or {}).values():
            try:
                decoded.append(base64.b64decode(value).decode(errors="replace"))
            except ValueError:
                decoded.append(str(value))
    for part in secret_parts:
        assert part not in logged, "a key (or its secret part) was logged"
        echoed = [text for text in answers if part in text]
        assert not echoed, f"a key was echoed in an answer: {echoed[:1]}"
        assert part not in stored and all(part not in d for d in decoded), (
            "a key is stored in clear"
        )
