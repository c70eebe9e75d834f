"""The gateway's configuration file (YAML), as pydantic models.

Keys are camelCase in YAML, like the BatchJob they feed: ``namespace``, ``storage``, ``models``,
``prices``, ``tiers``, plus the optional ``limits``, ``rateLimit``, ``auth``, ``expiry`` and
``webhooks`` sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from llmbatch.api.batchjob import K8S_NAME_PATTERN, ModelSpec, ResourcesSpec
from llmbatch.api.lines import DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES

DEFAULT_TIERS: dict[str, int] = {"free": 100, "basic": 500, "premium": 2000, "enterprise": 10000}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class StorageConfig(_Model):
    endpoint: str | None = None
    region: str | None = None
    bucket: str | None = Field(default=None, min_length=3, max_length=63)
    prefix: str = "gateway"
    # Multipart part size and parts in flight for uploads: the gateway's memory per upload is
    # about (writeConcurrency + 2) * partSize. 5 MiB is S3's minimum part size.
    part_size: int = Field(default=5 * 1024 * 1024, ge=5 * 1024 * 1024)
    write_concurrency: int = Field(default=2, ge=1, le=16)
    # A file:///abs/path root instead of a bucket: one machine, a shared volume, or tests.
    root: str | None = Field(default=None, pattern=r"^file:///.+$")
    # Name of a Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. The gateway reads it for
    # its own S3 access and passes it on to every BatchJob so the runner uses the same bucket.
    secret_ref: str | None = Field(default=None, pattern=K8S_NAME_PATTERN)

    @field_validator("secret_ref", mode="before")
    @classmethod
    def _name_or_ref(cls, value: Any) -> Any:
        # Accept both ``secretRef: name`` and ``secretRef: {name: name}`` (the BatchJob form).
        if isinstance(value, dict):
            return value.get("name")
        return value

    @field_validator("prefix")
    @classmethod
    def _strip_slashes(cls, value: str) -> str:
        return value.strip("/")

    @model_validator(mode="after")
    def _one_root(self) -> StorageConfig:
        if (self.bucket is None) == (self.root is None):
            raise ValueError("set exactly one of storage.bucket and storage.root")
        return self

    def uri(self, *parts: str) -> str:
        """``s3://bucket/prefix/part/...`` (or under ``root``)."""
        key = "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))
        base = self.root.rstrip("/") if self.root else f"s3://{self.bucket}"
        return f"{base}/{key}"


class ModelEntry(_Model):
    """A served model and the BatchJob defaults used for its batches."""

    source: str
    engine_args: dict[str, Any] = Field(default_factory=dict)
    chat_template: str | None = None
    parallelism: int = Field(default=1, ge=1, le=1000)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    priority_class_name: str | None = None
    queue_name: str | None = None
    max_retries: int | None = Field(default=None, ge=0, le=100)
    runner_image: str | None = None
    # Where the gateway finds the tokenizer for cost estimates when ``source`` is not a local
    # directory (e.g. weights on S3, tokenizer files mounted next to the gateway).
    tokenizer: str | None = None

    def model_spec(self, name: str) -> ModelSpec:
        return ModelSpec(
            name=name,
            source=self.source,
            engine_args=dict(self.engine_args),
            chat_template=self.chat_template,
        )


class Price(_Model):
    """US dollars per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class Limits(_Model):
    max_file_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1)
    max_requests: int = Field(default=DEFAULT_MAX_LINES, ge=1)
    # A JSON request body (inline create, validate) larger than this is refused with 413.
    max_json_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Line errors listed in one 400 answer (validation keeps going to count them all).
    max_reported_errors: int = Field(default=20, ge=1, le=1000)


class RateLimitConfig(_Model):
    # Length of the fixed window; tiers are defined as requests per window (per hour by default).
    window_seconds: int = Field(default=3600, ge=1)
    enabled: bool = True


class AuthConfig(_Model):
    # How long a replica trusts its copy of the keys Secret. A revoked key stops working on
    # every replica within this time; 0 reads the Secret on every request.
    cache_seconds: float = Field(default=1.0, ge=0)
    keys_secret: str = Field(default="llmbatch-gateway-keys", pattern=K8S_NAME_PATTERN)


class ExpiryConfig(_Model):
    # How often each replica deletes expired files' objects (every replica may: it is safe).
    sweep_interval_seconds: float = Field(default=300.0, gt=0)
    enabled: bool = True


class WebhooksConfig(_Model):
    # The Secret holding the tenants' endpoints and signing secrets (`llmbatch webhooks`).
    secret: str = Field(default="llmbatch-gateway-webhooks", pattern=K8S_NAME_PATTERN)
    # Loopback, link-local and private targets are refused unless this is set (a receiver
    # inside the cluster, or a test's receiver on 127.0.0.1).
    allow_private_targets: bool = False
    # How often each replica looks for deliveries that are due.
    interval_seconds: float = Field(default=5.0, gt=0)
    enabled: bool = True


class GatewayConfig(_Model):
    namespace: str = Field(default="default", pattern=K8S_NAME_PATTERN)
    storage: StorageConfig
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    tiers: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    limits: Limits = Field(default_factory=Limits)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    expiry: ExpiryConfig = Field(default_factory=ExpiryConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    # Serve batch reads from a watch-fed cache instead of one API call per read.
    watch_batch_jobs: bool = True
    # Largest completion window a batch may ask for (OpenAI allows 24h).
    max_completion_window: str = "24h"

    @model_validator(mode="after")
    def _models_make_valid_batchjobs(self) -> GatewayConfig:
        # Fail at startup, not on the first batch: each entry must give a valid BatchJob model.
        for name, entry in self.models.items():
            try:
                entry.model_spec(name)
            except ValueError as exc:
                raise ValueError(f"models.{name}: {exc}") from None
        return self

    @field_validator("tiers")
    @classmethod
    def _positive_tiers(cls, value: dict[str, int]) -> dict[str, int]:
        for tier, limit in value.items():
            if limit < 1:
                raise ValueError(f"tier {tier!r} must allow at least one request per window")
        return value


def load_config(path: Path) -> GatewayConfig:
    """Read and validate the YAML config; errors name the offending field."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the gateway config must be a YAML mapping")
    return GatewayConfig.model_validate(data)
