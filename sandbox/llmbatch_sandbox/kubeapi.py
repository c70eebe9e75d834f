"""A small asyncio client for the Kubernetes REST API, as the sandbox's controllers use it.

The Job controller and the kubelet talk to the API emulator over HTTP exactly as controllers
talk to a real API server (list, watch from a resourceVersion, create, merge-patch, delete),
so the emulator is exercised the same way the operator exercises it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

JsonObject = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the HTTP code and ``body`` the Status object if any."""

    def __init__(self, status: int, reason: str, body: JsonObject | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body or {}


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): the caller must list again."""


def collection_path(api_version: str, plural: str, namespace: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        return f"{base}/namespaces/{quote(namespace)}/{plural}"
    return f"{base}/{plural}"


def object_path(api_version: str, plural: str, namespace: str | None, name: str) -> str:
    return f"{collection_path(api_version, plural, namespace)}/{quote(name)}"


class KubeApi:
    """JSON over HTTP against ``base_url``. One instance per component; call :meth:`close`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        data = None if body is None else json.dumps(body)
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        async with self.session.request(
            method,
            self.base_url + path,
            data=data,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            text = await response.text()
            payload = _loads(text)
            if response.status >= 400:
                raise ApiError(response.status, str(payload.get("message") or text), payload)
            return payload

    async def get(self, path: str) -> JsonObject | None:
        """The object at ``path``, or None on 404."""
        try:
            return await self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str | None = None) -> JsonObject:
        params = {"labelSelector": label_selector} if label_selector else None
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: JsonObject) -> JsonObject:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, patch: JsonObject) -> JsonObject:
        return await self.request("PATCH", path, patch, content_type=MERGE_PATCH)

    async def delete(
        self,
        path: str,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        preconditions_uid: str | None = None,
    ) -> JsonObject | None:
        """DELETE with DeleteOptions; None when the object is already gone."""
        options: JsonObject = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if preconditions_uid is not None:
            options["preconditions"] = {"uid": preconditions_uid}
        try:
            return await self.request("DELETE", path, options)
        except ApiError as error:
            if error.status in (404, 409):
                # 409: the uid precondition failed, i.e. a newer object took the name.
                return None
            raise

    async def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[JsonObject]:
        """The events of one watch request from ``resource_version`` (ADDED, MODIFIED,
        DELETED, BOOKMARK). Ends when the server closes the stream; raises
        :class:`WatchExpired` on 410 Gone."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        async with self.session.get(
            self.base_url + path,
            params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None),
        ) as response:
            if response.status == 410:
                raise WatchExpired(path)
            if response.status >= 400:
                text = await response.text()
                raise ApiError(response.status, text, _loads(text))
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = _loads(line.decode())
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        if status.get("code") == 410:
                            raise WatchExpired(path)
                        raise ApiError(int(status.get("code") or 500), str(status), status)
                    yield event


def _loads(text: str) -> JsonObject:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"message": text}
    return value if isinstance(value, dict) else {"value": value}
