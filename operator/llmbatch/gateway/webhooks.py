"""Webhook endpoints, per tenant: a URL and its signing secret, registered with
``llmbatch webhooks add --tenant T URL``.

Kept in the Secret ``llmbatch-gateway-webhooks`` (one data entry per endpoint id, holding JSON:
tenant, url, secret, creation time), next to the API keys and stored the same way. Unlike an API
key, a signing secret must be read back to sign with, so it is stored as given (a Secret, read
only by the gateway's service account) and shown once, when the endpoint is added.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from anyio import to_thread

from llmbatch.api.timefmt import now_rfc3339, parse_time
from llmbatch.gateway.keys import TENANT_PATTERN
from llmbatch.gateway.kube import KubeClient
from llmbatch.gateway.secretdata import update_secret_data
from llmbatch.kube import NotFound
from llmbatch.notify.signing import new_secret, secret_key
from llmbatch.notify.urls import check_url

ENDPOINT_PATTERN = re.compile(r"^we_[0-9a-f]{16}$")


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    tenant: str
    url: str
    secret: str
    created_at: str

    def to_json(self) -> str:
        data = {"tenant": self.tenant, "url": self.url, "secret": self.secret}
        return json.dumps({**data, "createdAt": self.created_at}, sort_keys=True)

    @classmethod
    def from_json(cls, endpoint_id: str, text: str) -> WebhookEndpoint:
        data = json.loads(text)
        secret = str(data["secret"])
        secret_key(secret)  # a hand-edited secret that cannot sign is not an endpoint
        return cls(
            id=endpoint_id,
            tenant=str(data["tenant"]),
            url=str(data["url"]),
            secret=secret,
            created_at=str(data.get("createdAt", "")),
        )

    @property
    def created_unix(self) -> float:
        moment = parse_time(self.created_at)
        return moment.timestamp() if moment is not None else 0.0


def _decode(secret: dict[str, Any]) -> list[WebhookEndpoint]:
    found = []
    for endpoint_id, value in (secret.get("data") or {}).items():
        try:
            found.append(WebhookEndpoint.from_json(endpoint_id, base64.b64decode(value).decode()))
        except (ValueError, KeyError):
            continue
    return sorted(found, key=lambda e: (e.tenant, e.created_at, e.id))


class WebhookStore:
    def __init__(self, kube: KubeClient, secret_name: str, cache_seconds: float = 5.0) -> None:
        self.kube = kube
        self.secret_name = secret_name
        self.cache_seconds = cache_seconds
        self._endpoints: list[WebhookEndpoint] = []
        self._read_at = float("-inf")

    async def _load(self) -> list[WebhookEndpoint]:
        try:
            return _decode(await self.kube.get("secrets", self.secret_name))
        except NotFound:
            return []

    async def for_tenant(self, tenant: str) -> list[WebhookEndpoint]:
        """The tenant's endpoints, from a copy at most ``cache_seconds`` old."""
        if time.monotonic() - self._read_at >= self.cache_seconds:
            self._endpoints, self._read_at = await self._load(), time.monotonic()
        return [e for e in self._endpoints if e.tenant == tenant]

    # --- administration (the `llmbatch webhooks` CLI) -----------------------------------------
    async def add(self, tenant: str, url: str, *, allow_private: bool = False) -> WebhookEndpoint:
        if not re.match(TENANT_PATTERN, tenant):
            raise ValueError(f"tenant {tenant!r} must be a DNS label (lowercase, digits, '-')")
        await to_thread.run_sync(lambda: check_url(url, allow_private=allow_private))
        endpoint = WebhookEndpoint(
            id=f"we_{secrets.token_hex(8)}",
            tenant=tenant,
            url=url,
            secret=new_secret(),
            created_at=now_rfc3339(),
        )
        encoded = base64.b64encode(endpoint.to_json().encode()).decode()
        await update_secret_data(self.kube, self.secret_name, lambda d: {**d, endpoint.id: encoded})
        self._read_at = float("-inf")
        return endpoint

    async def remove(self, endpoint_id: str) -> bool:
        found = False

        def drop(data: dict[str, str]) -> dict[str, str]:
            nonlocal found
            found = endpoint_id in data
            return {k: v for k, v in data.items() if k != endpoint_id}

        await update_secret_data(self.kube, self.secret_name, drop)
        self._read_at = float("-inf")
        return found

    async def list(self, tenant: str | None = None) -> list[WebhookEndpoint]:
        return [e for e in await self._load() if tenant is None or e.tenant == tenant]
