"""API keys: ``sk-lb-<key id>-<secret>``, stored only as a SHA-256 digest in the Secret
``llmbatch-gateway-keys`` (one data entry per key id, holding JSON: digest, tenant, tier,
creation time).

A key carries 256 random bits, so a plain SHA-256 is enough (no slow KDF: there is nothing to
brute-force) and the digest alone cannot be replayed. The key id in the key makes lookup a
dict access; the digest comparison is constant-time. Every replica reads the Secret, cached for
``auth.cacheSeconds`` at most, so a revocation is seen by all replicas within that time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from llmbatch.api.timefmt import now_rfc3339
from llmbatch.gateway.kube import KubeClient
from llmbatch.gateway.secretdata import Change, update_secret_data
from llmbatch.kube import NotFound

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-lb-"
_KEY = re.compile(r"^sk-lb-([0-9a-f]{12})-([A-Za-z0-9_\-]{32,})$")
TENANT_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
TIER_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"
MISS_REFRESH_SECONDS = 0.25


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    digest: str
    tenant: str
    tier: str
    created_at: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "sha256": self.digest,
                "tenant": self.tenant,
                "tier": self.tier,
                "createdAt": self.created_at,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, key_id: str, text: str) -> KeyRecord:
        data = json.loads(text)
        return cls(
            key_id=key_id,
            digest=str(data["sha256"]),
            tenant=str(data["tenant"]),
            tier=str(data["tier"]),
            created_at=str(data.get("createdAt", "")),
        )


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant owns objects, the tier sets the rate limit."""

    key_id: str
    tenant: str
    tier: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key id, full key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"


def parse_key_id(key: str) -> str | None:
    match = _KEY.match(key)
    return match.group(1) if match else None


def _decode(secret: dict[str, Any]) -> dict[str, KeyRecord]:
    records: dict[str, KeyRecord] = {}
    for key_id, value in (secret.get("data") or {}).items():
        try:
            records[key_id] = KeyRecord.from_json(key_id, base64.b64decode(value).decode())
        except (ValueError, KeyError):
            continue  # a hand-edited entry that does not parse grants nothing
    return records


class KeyStore:
    def __init__(self, kube: KubeClient, secret_name: str, cache_seconds: float = 1.0) -> None:
        self.kube = kube
        self.secret_name = secret_name
        self.cache_seconds = cache_seconds
        self._records: dict[str, KeyRecord] = {}
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None

    async def _load(self) -> dict[str, KeyRecord]:
        try:
            secret = await self.kube.get("secrets", self.secret_name)
        except NotFound:
            return {}
        return _decode(secret)

    async def records(self, max_age: float | None = None) -> dict[str, KeyRecord]:
        max_age = self.cache_seconds if max_age is None else max_age
        age = time.monotonic() - self._read_at
        if age < max_age:
            if age > max_age / 2 and self._refresh is None:
                # Refresh ahead in the background: under steady traffic no request ever waits
                # for the Secret, and the copy in use is never older than max_age.
                self._refresh = asyncio.create_task(self._reload())
            return self._records
        # Too old to use: one read refreshes the cache for every request waiting on it.
        async with self._lock:
            if time.monotonic() - self._read_at >= max_age:
                await self._reload_now()
        return self._records

    async def _reload_now(self) -> None:
        started = time.monotonic()
        records = await self._load()
        # The copy is as old as the moment the read started.
        if started > self._read_at:
            self._records, self._read_at = records, started

    async def _reload(self) -> None:
        try:
            async with self._lock:
                await self._reload_now()
        except Exception as exc:  # the next request past max_age reads (and reports) again
            log.warning("background refresh of the API keys failed: %s", exc)
        finally:
            self._refresh = None

    async def authenticate(self, key: str) -> Principal | None:
        key_id = parse_key_id(key)
        if key_id is None:
            return None
        record = (await self.records()).get(key_id)
        if record is None and self.cache_seconds > MISS_REFRESH_SECONDS:
            # A key created since the last read works at once; unknown ids (a client probing
            # with made-up keys) cause at most one Secret read per MISS_REFRESH_SECONDS.
            record = (await self.records(MISS_REFRESH_SECONDS)).get(key_id)
        if record is None or not hmac.compare_digest(record.digest, digest(key)):
            return None
        return Principal(key_id=record.key_id, tenant=record.tenant, tier=record.tier)

    # --- administration (the `llmbatch keys` CLI) ---------------------------------------------
    async def create(self, tenant: str, tier: str) -> tuple[KeyRecord, str]:
        if not re.match(TENANT_PATTERN, tenant):
            raise ValueError(f"tenant {tenant!r} must be a DNS label (lowercase, digits, '-')")
        if not re.match(TIER_PATTERN, tier):
            raise ValueError(f"tier {tier!r} must be lowercase letters, digits and '-'")
        key_id, key = new_key()
        record = KeyRecord(
            key_id=key_id,
            digest=digest(key),
            tenant=tenant,
            tier=tier,
            created_at=now_rfc3339(),
        )
        encoded = base64.b64encode(record.to_json().encode()).decode()

        def add(data: dict[str, str]) -> dict[str, str]:
            return {**data, key_id: encoded}

        await self._update(add)
        return record, key

    async def revoke(self, key_id: str) -> bool:
        found = False

        def remove(data: dict[str, str]) -> dict[str, str]:
            nonlocal found
            found = key_id in data
            return {k: v for k, v in data.items() if k != key_id}

        await self._update(remove)
        self._read_at = float("-inf")
        return found

    async def list(self) -> list[KeyRecord]:
        return sorted((await self._load()).values(), key=lambda r: (r.tenant, r.created_at))

    async def _update(self, change: Change) -> None:
        await update_secret_data(self.kube, self.secret_name, change)
