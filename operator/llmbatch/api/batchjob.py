"""BatchJob (llmbatch.io/v1alpha1): spec and status, the single source of the CRD schema.

Field names are snake_case in Python and camelCase on the wire (``model_dump(by_alias=True)``).
Constraints declared here become the CRD's openAPIV3Schema (see ``llmbatch.api.crd``), so the
API server rejects a bad BatchJob at apply time with a message naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from llmbatch.api.conditions import ConditionType
from llmbatch.api.durations import DURATION_PATTERN, parse_duration
from llmbatch.api.gvk import API_VERSION, KIND
from llmbatch.api.lines import Endpoint
from llmbatch.api.phases import Phase
from llmbatch.api.timefmt import format_time

# Marks a field whose contents the API server must keep as given (engine args, affinity, ...).
PRESERVE: JsonDict = {"x-kubernetes-preserve-unknown-fields": True}

# s3://bucket/key, file:///abs/path, or an absolute path (a PVC mount in the pod).
URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?|file:///.*|/.*)$"
# hf://org/name, s3://bucket/key, or an absolute local path.
MODEL_SOURCE_PATTERN = r"^(hf://[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)?|s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?|/.*)$"
# The served model name is matched against body.model; keep it printable and flag-free.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@\-]*$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def _wire_time(moment: datetime) -> str:
    return format_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


# A status time: written the way Kubernetes writes times (UTC, whole seconds, ``Z``), so a
# status computed twice from the same observations dumps to the same bytes.
Time = Annotated[datetime, PlainSerializer(_wire_time, return_type=str, when_used="json")]


def immutable(field: str) -> dict[str, Any]:
    """A CEL transition rule that makes a spec field immutable once accepted."""
    return {
        "x-kubernetes-validations": [
            {
                "rule": "self == oldSelf",
                "message": f"spec.{field} is immutable; create a new BatchJob",
            }
        ]
    }


class CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=False
    )

    def to_k8s(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ModelSpec(CamelModel):
    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=MODEL_NAME_PATTERN,
        description="Served model name; each input line's body.model must equal it.",
    )
    source: str = Field(
        min_length=1,
        max_length=1024,
        pattern=MODEL_SOURCE_PATTERN,
        description=(
            "Where the weights come from: hf://org/name, s3://bucket/prefix,"
            " or a local path (e.g. a PVC mount)."
        ),
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra=PRESERVE,
        description=(
            "vLLM engine arguments (max_model_len, tensor_parallel_size,"
            " enable_prefix_caching, ...)."
        ),
    )
    chat_template: str | None = Field(
        default=None,
        max_length=65536,
        description="Jinja chat template overriding the tokenizer's own.",
    )


class SecretRef(CamelModel):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    )


class StorageSpec(CamelModel):
    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://.+$",
        description="S3 endpoint URL (MinIO, moto); AWS when unset.",
    )
    region: str | None = Field(default=None, max_length=64, description="S3 region.")
    secret_ref: SecretRef | None = Field(default=None, description="Credentials for the bucket.")


class ResourcesSpec(CamelModel):
    gpu: int = Field(default=1, ge=0, le=64, description="GPUs per shard.")
    gpu_resource_name: str = Field(
        default="nvidia.com/gpu",
        min_length=1,
        max_length=253,
        description="Extended resource name of the GPU.",
    )
    cpu: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?m?$",
        description="CPU request and limit per shard, e.g. 4 or 500m.",
    )
    memory: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$",
        description="Memory request and limit per shard, e.g. 32Gi.",
    )


# Which engine runs the shards: vLLM driven by the runner, or Ray Data's LLM API (one pod with
# a local Ray instance, or a KubeRay RayJob when ray.workers is set). See docs/backends.md.
Backend = Literal["vllm", "ray"]


class RaySpec(CamelModel):
    workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=(
            "GPU worker pods of a KubeRay RayJob running the batch (KubeRay must be installed);"
            " unset: one pod runs a local Ray instance over its own GPUs."
        ),
    )
    worker_resources: ResourcesSpec | None = Field(
        default=None, description="Resources per Ray worker pod (default: spec.resources)."
    )
    head_resources: ResourcesSpec | None = Field(
        default=None,
        description=(
            "Resources of the Ray head pod (default: 2 CPUs, 8Gi, no GPU); gpu defaults to 1"
            " here as elsewhere, so set gpu: 0 for a head without a GPU."
        ),
    )


# The events a BatchJob's webhook can send, one per terminal phase (OpenAI's batch events).
WebhookEvent = Literal["batch.completed", "batch.failed", "batch.expired", "batch.cancelled"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = (
    "batch.completed",
    "batch.failed",
    "batch.expired",
    "batch.cancelled",
)


class WebhookSecretRef(CamelModel):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
        description="Secret in the BatchJob's namespace holding the whsec_ signing secret.",
    )
    key: str = Field(
        default="secret",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key of the signing secret in the Secret.",
    )


class NotifySpec(CamelModel):
    webhook_url: str = Field(
        max_length=2048,
        pattern=r"^https?://[^/\s]+.*$",
        description=(
            "Where the operator POSTs the batch's terminal event, signed per Standard Webhooks;"
            " loopback, link-local and private targets are refused unless the operator allows"
            " them."
        ),
    )
    webhook_secret_ref: WebhookSecretRef = Field(description="The signing secret (whsec_...).")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(WEBHOOK_EVENTS),
        max_length=4,
        description="Events to send; all four terminal events when unset.",
    )


# How the operator moves the shard count between parallelism and maxParallelism.
ScalingPolicy = Literal["Deadline", "None"]


class PricingSpec(CamelModel):
    gpu_hour_usd: float = Field(
        ge=0, le=100000, description="Price of one GPU for one hour, for status.costUsd."
    )


class BatchJobSpec(CamelModel):
    # maxParallelism below parallelism is refused at apply time (CEL) and when parsed; shard
    # counts with ray.workers at apply time (CEL) and by the operator's validation.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.maxParallelism) || self.maxParallelism >= self.parallelism",
                    "message": "spec.maxParallelism must be at least spec.parallelism",
                },
                {
                    "rule": "!has(self.ray) || (has(self.backend) && self.backend == 'ray')",
                    "message": "spec.ray requires spec.backend: ray",
                },
                {
                    "rule": "!has(self.backend) || self.backend != 'ray'"
                    " || !has(self.endpoint) || self.endpoint == '/v1/chat/completions'",
                    "message": "spec.backend ray serves /v1/chat/completions only",
                },
                # The KubeRay form is one RayJob, one shard over the Ray cluster: shard counts
                # do not apply. The operator's validation says the same for clusters without
                # CEL (controller/validation.py, check_rayjob_form).
                {
                    "rule": "!has(self.ray) || !has(self.ray.workers)"
                    " || !has(self.parallelism) || self.parallelism == 1",
                    "message": "spec.ray.workers runs the batch as one KubeRay RayJob: set"
                    " spec.parallelism to 1 and size the Ray cluster with spec.ray.workers",
                },
                {
                    "rule": "!has(self.ray) || !has(self.ray.workers) || !has(self.maxParallelism)",
                    "message": "spec.maxParallelism adds Indexed Job shards, which the KubeRay"
                    " form (spec.ray.workers) does not run: remove spec.maxParallelism, or"
                    " spec.ray.workers to scale one-pod shards instead",
                },
            ]
        }
    )

    model: ModelSpec = Field(
        json_schema_extra=immutable("model"), description="The model to serve."
    )
    input: str = Field(
        min_length=1,
        max_length=2048,
        pattern=URI_PATTERN,
        json_schema_extra=immutable("input"),
        description="URI of the OpenAI batch JSONL input (s3://bucket/key, file:///path).",
    )
    output: str = Field(
        min_length=1,
        max_length=2048,
        pattern=URI_PATTERN,
        json_schema_extra=immutable("output"),
        description="URI prefix that receives output.jsonl, errors.jsonl and manifest.json.",
    )
    endpoint: Endpoint = Field(
        default=Endpoint.CHAT_COMPLETIONS,
        json_schema_extra=immutable("endpoint"),
        description=(
            "The OpenAI endpoint every input line targets. Endpoints vLLM cannot serve "
            "(moderations, images, videos, audio) are not accepted: run those elsewhere."
        ),
    )
    completion_window: str = Field(
        default="24h",
        pattern=DURATION_PATTERN,
        description="How long after creation the batch may run, e.g. 24h or 90m.",
    )
    parallelism: int = Field(
        default=1,
        ge=1,
        le=1000,
        json_schema_extra=immutable("parallelism"),
        description="Number of shards (Indexed Job completions); the floor when scaling.",
    )
    max_parallelism: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description=(
            "Most shards the operator may run to meet the deadline (extra Indexed Jobs of one"
            " shard each, admitted on their own); parallelism when unset. Mutable."
        ),
    )
    scaling_policy: ScalingPolicy | None = Field(
        default=None,
        description=(
            "Deadline: add shards while the measured ETA passes the deadline, remove them once"
            " comfortably ahead. None: keep parallelism. Deadline when maxParallelism >"
            " parallelism."
        ),
    )
    pricing: PricingSpec | None = Field(
        default=None, description="A GPU price, for the cost figure in status."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Per-shard resources."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node selector for shard pods."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        json_schema_extra={"items": {"type": "object", **PRESERVE}},
        description="Tolerations for shard pods.",
    )
    affinity: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra=PRESERVE, description="Affinity for shard pods."
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
        description="PriorityClass of shard pods.",
    )
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="Kueue LocalQueue; set as kueue.x-k8s.io/queue-name on the Job.",
    )
    suspend: bool = Field(default=False, description="Pause the batch; clear to resume.")
    cancel: bool = Field(default=False, description="Stop the batch, keeping partial results.")
    max_retries: int = Field(
        default=3, ge=0, le=100, description="Retries per shard (backoffLimitPerIndex)."
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="S3 settings for input, output and model."
    )
    runner_image: str | None = Field(
        default=None, max_length=1024, description="Overrides the chart's runner image."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the Jobs this long after the batch finishes."
    )
    metadata: dict[str, Annotated[str, Field(max_length=512)]] = Field(
        default_factory=dict,
        max_length=16,
        # OpenAI's limits; the schema has no keyword for key lengths, so CEL checks them.
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(k, size(k) <= 64)",
                    "message": "spec.metadata keys are at most 64 characters",
                }
            ]
        },
        description="OpenAI batch metadata: up to 16 pairs (keys up to 64, values 512 characters).",
    )

    notify: NotifySpec | None = Field(
        default=None, description="A webhook called when the batch reaches a terminal phase."
    )
    backend: Backend = Field(
        default="vllm",
        # Mutable: both backends work the same plan, leases and parts, so a shard started
        # after a change picks up where the others left off.
        description="vllm (the runner drives vLLM) or ray (Ray Data's LLM API over the plan).",
    )
    ray: RaySpec | None = Field(
        default=None,
        description="Ray settings of backend ray; workers set: a KubeRay RayJob runs the batch.",
    )

    @field_validator("max_parallelism")
    @classmethod
    def _at_least_parallelism(cls, value: int | None, info: ValidationInfo) -> int | None:
        floor = info.data.get("parallelism")
        if value is not None and floor is not None and value < floor:
            raise ValueError(f"must be at least spec.parallelism ({floor}), got {value}")
        return value

    @field_validator("backend")
    @classmethod
    def _ray_serves_chat(cls, value: Backend, info: ValidationInfo) -> Backend:
        endpoint = info.data.get("endpoint")
        if value == "ray" and endpoint not in (None, Endpoint.CHAT_COMPLETIONS):
            raise ValueError("backend ray serves /v1/chat/completions only")
        return value

    @field_validator("ray")
    @classmethod
    def _ray_needs_backend(cls, value: RaySpec | None, info: ValidationInfo) -> RaySpec | None:
        if value is not None and info.data.get("backend") != "ray":
            raise ValueError("spec.ray requires spec.backend: ray")
        return value

    @property
    def shard_ceiling(self) -> int:
        """The most shards the batch may run: maxParallelism, or parallelism when unset."""
        return max(self.max_parallelism or self.parallelism, self.parallelism)

    @property
    def elastic(self) -> bool:
        """The operator steers the shard count toward the deadline."""
        policy = self.scaling_policy or "Deadline"
        return policy == "Deadline" and self.shard_ceiling > self.parallelism

    @field_validator("completion_window")
    @classmethod
    def _window_parses(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if len(key) > 64 or len(item) > 512:
                raise ValueError("metadata keys are at most 64 and values 512 characters")
        return value


class Condition(CamelModel):
    type: ConditionType | str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: Time | None = None
    observed_generation: int | None = None


class RequestCounts(CamelModel):
    # The operator writes None while the shards have not counted their lines: left out of the
    # patch, the API server stores its default 0, which the operator reads as unknown too.
    total: int | None = Field(default=0, ge=0)
    completed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)


class Usage(CamelModel):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


class ShardStatus(CamelModel):
    index: int = Field(ge=0)
    state: str = Field(default="Pending", description="Pending, Running, Succeeded or Failed.")
    completed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    restarts: int = Field(default=0, ge=0)


class PlanStatus(CamelModel):
    """What the plan step found (``<output>/plan/plan.json``); the totals themselves are in
    requestCounts and usage."""

    chunks: int = Field(default=0, ge=0, description="Work units the shards claim.")
    invalid: int = Field(
        default=0, ge=0, description="Lines the plan refused (in errors.jsonl, never run)."
    )
    prompt_tokens: int = Field(default=0, ge=0, description="Prompt tokens of the whole input.")
    token_counter: str | None = Field(
        default=None, description="How prompt tokens were counted: tokenizer or estimate."
    )


class ShardChange(CamelModel):
    """One change of the shard count, and why (the Scaling condition's reason)."""

    time: Time
    from_: int = Field(alias="from", ge=0)
    to: int = Field(ge=0)
    reason: str


# The shard-count history keeps the most recent changes.
MAX_SHARD_HISTORY = 20


class Timestamps(CamelModel):
    """When each OpenAI-visible transition happened (RFC 3339)."""

    created_at: Time | None = None
    in_progress_at: Time | None = None
    finalizing_at: Time | None = None
    completed_at: Time | None = None
    failed_at: Time | None = None
    expired_at: Time | None = None
    cancelling_at: Time | None = None
    cancelled_at: Time | None = None


class BatchError(CamelModel):
    code: str
    message: str
    line: int | None = None


class BatchJobStatus(CamelModel):
    phase: Phase | None = None
    reason: str | None = Field(
        default=None, description="Why the batch is in its phase (see conditions)."
    )
    message: str | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = None
    request_counts: RequestCounts | None = None
    usage: Usage | None = None
    progress: str | None = Field(default=None, description="done/total, e.g. 412/1000.")
    throughput: float | None = Field(default=None, description="Tokens per second over the shards.")
    eta: Time | None = None
    deadline: Time | None = None
    start_time: Time | None = None
    completion_time: Time | None = None
    timestamps: Timestamps | None = None
    job_name: str | None = None
    finalize_job_name: str | None = None
    plan_job_name: str | None = None
    plan: PlanStatus | None = None
    shards: list[ShardStatus] = Field(default_factory=list)
    shard_count: int | None = Field(
        default=None, ge=0, description="Shards the batch runs now (parallelism plus extras)."
    )
    shard_history: list[ShardChange] = Field(
        default_factory=list,
        max_length=MAX_SHARD_HISTORY,
        description="The latest changes of the shard count.",
    )
    gpu_seconds: float | None = Field(
        default=None,
        ge=0,
        description=(
            "GPU-seconds the batch's pods have run so far (each pod's running time times the"
            " GPUs it holds)."
        ),
    )
    gpu_seconds_at: Time | None = Field(
        default=None, description="When gpuSeconds was last brought up to date."
    )
    cost_usd: float | None = Field(
        default=None, ge=0, description="gpuSeconds at spec.pricing.gpuHourUsd."
    )
    output_file: str | None = None
    error_file: str | None = None
    manifest: str | None = None
    input_sha256: str | None = None
    errors: list[BatchError] = Field(
        default_factory=list,
        max_length=100,
        description="Batch-level errors, e.g. spec checks that failed.",
    )


class BatchJob(CamelModel):
    """A whole BatchJob object, for typed access in code and tests."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: BatchJobSpec
    status: BatchJobStatus | None = None


__all__ = [
    "BatchJob",
    "BatchJobSpec",
    "BatchJobStatus",
    "Condition",
    "ConditionType",
    "ModelSpec",
    "NotifySpec",
    "PlanStatus",
    "PricingSpec",
    "RequestCounts",
    "ResourcesSpec",
    "SecretRef",
    "ShardChange",
    "ShardStatus",
    "StorageSpec",
    "Timestamps",
    "Usage",
    "WebhookSecretRef",
]
