"""The one client's requests against the API emulator, through both faces (async for the
operator and the gateway, sync for the CLI): answers as dicts, errors as KubeError with status,
reason and kind, throttling (429 / Retry-After) waited out as the server asks, watch streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from llmbatch.kube import (
    MAX_RETRY_AFTER,
    MERGE_PATCH,
    RETRY_AFTER_ATTEMPTS,
    AsyncKube,
    Conflict,
    Connection,
    Kube,
    KubeError,
    NotFound,
    parse_retry_after,
)
from tests.kube.emulator import api_server, fault, send

NS = "kube-client-test"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with api_server(NS) as url:
        yield url


class Client:
    """Either face of the client behind one awaitable ``request``."""

    def __init__(self, face: str, connection: Connection, **options: Any) -> None:
        self.face = face
        self.sync = Kube(connection, **options) if face == "sync" else None
        self.aio = AsyncKube(connection, **options) if face == "async" else None

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if self.sync is not None:
            return await asyncio.to_thread(self.sync.request, method, path, body, **kw)
        assert self.aio is not None
        return await self.aio.request(method, path, body, **kw)

    @property
    def throttled(self) -> int:
        kube = self.sync or self.aio
        assert kube is not None
        return kube.core.throttled

    async def close(self) -> None:
        if self.sync is not None:
            self.sync.close()
        if self.aio is not None:
            await self.aio.aclose()


@pytest.fixture(params=["async", "sync"])
async def client(request: pytest.FixtureRequest, server: str) -> AsyncIterator[Client]:
    kube = Client(request.param, Connection(server))
    yield kube
    await kube.close()


def configmap(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {"k": "v"}}


async def test_answers_and_errors_carry_status_reason_and_kind(client: Client) -> None:
    name = f"answers-{client.face}"
    created = await client.request("POST", CONFIGMAPS, configmap(name))
    assert created["metadata"]["name"] == name and created["data"] == {"k": "v"}
    with pytest.raises(Conflict) as exists:
        await client.request("POST", CONFIGMAPS, configmap(name))
    assert exists.value.conflict and exists.value.status == 409
    assert exists.value.reason == "AlreadyExists"
    patched = await client.request(
        "PATCH", f"{CONFIGMAPS}/{name}", {"data": {"k": None, "x": "y"}}, content_type=MERGE_PATCH
    )
    assert patched["data"] == {"x": "y"}
    with pytest.raises(NotFound) as missing:
        await client.request("GET", f"{CONFIGMAPS}/nope")
    error = missing.value
    assert isinstance(error, KubeError) and error.not_found and not error.conflict
    assert error.reason == "NotFound" and "nope" in error.message
    assert str(error).startswith("Kubernetes API answered 404: ")
    assert error.retry_after is None
    listed = await client.request(
        "GET", CONFIGMAPS, params={"fieldSelector": f"metadata.name={name}"}
    )
    assert [item["metadata"]["name"] for item in listed["items"]] == [name]


async def test_a_429_with_retry_after_is_waited_out_and_retried(
    client: Client, server: str
) -> None:
    name = f"throttled-{client.face}"
    with fault(server, NS, code=429, verb="create", resource="configmaps", times=2, retry_after=1):
        started = time.monotonic()
        created = await client.request("POST", CONFIGMAPS, configmap(name))
        waited = time.monotonic() - started
    assert created["metadata"]["name"] == name
    assert client.throttled == 2
    assert waited >= 2.0  # the server asked for 1 s, twice
    assert (await client.request("GET", f"{CONFIGMAPS}/{name}"))["data"] == {"k": "v"}


async def test_throttling_that_outlasts_the_attempts_surfaces_with_its_pause(
    client: Client, server: str
) -> None:
    with (
        fault(server, NS, code=429, verb="get", resource="configmaps", times=50, retry_after=0),
        pytest.raises(KubeError) as raised,
    ):
        await client.request("GET", f"{CONFIGMAPS}/anything")
    assert raised.value.status == 429
    assert raised.value.retry_after == 0.0
    assert client.throttled == RETRY_AFTER_ATTEMPTS - 1


async def test_a_500_without_retry_after_fails_at_once(client: Client, server: str) -> None:
    with fault(server, NS, code=500, verb="get", resource="configmaps", times=1):
        with pytest.raises(KubeError) as raised:
            await client.request("GET", f"{CONFIGMAPS}/anything")
        assert raised.value.status == 500 and raised.value.retry_after is None
        assert client.throttled == 0
        with pytest.raises(NotFound):  # the fault was used up by one call
            await client.request("GET", f"{CONFIGMAPS}/anything")


async def test_a_watch_streams_events_and_fails_at_once_on_an_error(server: str) -> None:
    kube = AsyncKube(Connection(server))
    try:
        listed = await kube.request("GET", CONFIGMAPS)
        params = {"watch": "1", "resourceVersion": listed["metadata"]["resourceVersion"]}
        async with kube.stream("GET", CONFIGMAPS, params) as lines:
            await asyncio.to_thread(send, server, "POST", CONFIGMAPS, configmap("watched"))
            async for line in lines:
                event = json.loads(line)
                if event["object"]["metadata"]["name"] == "watched":
                    break
        assert event["type"] == "ADDED"
        with pytest.raises(NotFound):
            async with kube.stream("GET", f"/api/v1/namespaces/{NS}/nothings", params):
                pass
    finally:
        await kube.aclose()


@pytest.mark.parametrize("face", ["async", "sync"])
async def test_each_request_carries_a_fresh_token_and_json_headers(face: str) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"kind": "Status"})

    tokens = iter(["one", "two"])
    connection = Connection("https://k:6443/base", token=lambda: next(tokens))
    client = Client(face, connection, transport=httpx.MockTransport(answer))
    try:
        await client.request("GET", "/api/v1/namespaces", params={"limit": "1"})
        await client.request("PATCH", "/api/v1/namespaces/a", {"x": 1}, content_type=MERGE_PATCH)
    finally:
        await client.close()
    first, second = seen
    assert str(first.url) == "https://k:6443/base/api/v1/namespaces?limit=1"
    assert first.headers["Authorization"] == "Bearer one"
    assert "Content-Type" not in first.headers and first.headers["Accept"] == "application/json"
    assert second.headers["Authorization"] == "Bearer two"
    assert second.headers["Content-Type"] == MERGE_PATCH
    assert json.loads(second.content) == {"x": 1}


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (429, "3", 3.0),
        (429, None, 1.0),  # "slow down" without a number: one second
        (429, "Wed, 21 Oct 2026 07:28:00 GMT", 1.0),
        (429, "3600", MAX_RETRY_AFTER),
        (429, "-5", 1.0),
        (503, "2", 2.0),
        (503, None, None),  # a 5xx retries only when the server asks
        (409, "2", None),  # a conflict will not clear by waiting
        (404, None, None),
    ],
)
def test_parse_retry_after(status: int, header: str | None, expected: float | None) -> None:
    assert parse_retry_after(status, header) == expected
