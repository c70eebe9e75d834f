"""Operator configuration: flags of ``llmbatch operator`` and environment variables.

Everything a builder needs is in ``OperatorConfig`` so the builders stay pure: the same config
and BatchJob always give the same child manifests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

from llmbatch.controller.policy.scaling import MIN_RATE_SPAN, ScalingSettings

DEFAULT_RUNNER_IMAGE = "ghcr.io/llmbatch/runner:0.1.0"
DEFAULT_METRICS_PORT = 9090
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
# Kopf bookkeeping (progress, diffbase, finalizer) goes under this prefix, never into status.
ANNOTATION_PREFIX = "llmbatch.io"
FINALIZER = "llmbatch.io/kopf-finalizer"


class ConfigError(ValueError):
    """An environment variable of the operator has a value it cannot use; the message names
    the variable, the value and what is expected (one line per variable)."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected a whole number") from None


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"{name}={value!r}: expected a number")
    return number


# The scaling policy's settings (docs/scaling.md, "Operator settings"): variable -> field.
SCALING_ENV = {
    "LLMBATCH_SCALING_RATE_WINDOW_SECONDS": "rate_window",
    "LLMBATCH_SCALING_INTERVAL_SECONDS": "interval",
    "LLMBATCH_SCALING_MARGIN_SHARE": "margin_share",
    "LLMBATCH_SCALING_MARGIN_MIN_SECONDS": "margin_min",
    "LLMBATCH_SCALING_MARGIN_MAX_SECONDS": "margin_max",
    "LLMBATCH_SCALING_HYSTERESIS": "hysteresis",
}


def scaling_from_env(env: Mapping[str, str]) -> ScalingSettings:
    """The scaling settings from LLMBATCH_SCALING_*; unset variables keep the defaults. Raises
    ConfigError naming every variable whose value cannot work."""
    base = ScalingSettings()
    problems: list[str] = []
    numbers: dict[str, float] = {}
    for name, attr in SCALING_ENV.items():
        raw = env.get(name, "").strip()
        default = getattr(base, attr)
        if not raw:
            numbers[attr] = (
                default.total_seconds() if isinstance(default, timedelta) else float(default)
            )
            continue
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            problems.append(f"{name}={raw!r}: expected a number")
        numbers[attr] = number
    if not problems:
        problems = _scaling_problems(numbers)
    if problems:
        raise ConfigError("; ".join(problems))
    return ScalingSettings(
        rate_window=timedelta(seconds=numbers["rate_window"]),
        interval=timedelta(seconds=numbers["interval"]),
        margin_share=numbers["margin_share"],
        margin_min=timedelta(seconds=numbers["margin_min"]),
        margin_max=timedelta(seconds=numbers["margin_max"]),
        hysteresis=numbers["hysteresis"],
    )


def _scaling_problems(numbers: Mapping[str, float]) -> list[str]:
    """What is wrong with parsed scaling numbers, each naming its variable and the rule."""
    env = {attr: name for name, attr in SCALING_ENV.items()}

    def bad(attr: str, rule: str) -> str:
        return f"{env[attr]}={numbers[attr]:g}: {rule}"

    problems = []
    span = MIN_RATE_SPAN.total_seconds()
    if numbers["rate_window"] <= span:
        problems.append(
            bad(
                "rate_window",
                f"must be more than {span:g} (a shard's rate counts once it spans {span:g} s)",
            )
        )
    if numbers["interval"] <= 0:
        problems.append(bad("interval", "must be more than 0 seconds"))
    if not 0 < numbers["margin_share"] < 1:
        problems.append(bad("margin_share", "must be between 0 and 1 (0.1 is 10% of the window)"))
    if numbers["margin_min"] < 0:
        problems.append(bad("margin_min", "must be 0 or more seconds"))
    if numbers["margin_max"] <= 0:
        problems.append(bad("margin_max", "must be more than 0 seconds"))
    elif numbers["margin_max"] < numbers["margin_min"]:
        problems.append(
            bad("margin_max", f"must be at least {env['margin_min']} ({numbers['margin_min']:g})")
        )
    if numbers["hysteresis"] <= 1:
        problems.append(
            bad(
                "hysteresis",
                "must be more than 1 (at 1 a shard just added to meet the deadline could be "
                "removed by the next reading of the rate)",
            )
        )
    return problems


@dataclass(frozen=True)
class OperatorConfig:
    runner_image: str = DEFAULT_RUNNER_IMAGE
    # Used for BatchJobs that leave spec.storage.endpoint/region unset (MinIO in-cluster, the
    # sandbox's S3 whose port is chosen at start).
    default_s3_endpoint: str | None = None
    default_s3_region: str | None = None
    metrics_port: int = DEFAULT_METRICS_PORT
    liveness_endpoint: str | None = DEFAULT_LIVENESS
    # activeDeadlineSeconds = time to the deadline + this margin: the runner stops by itself at
    # the deadline (exit 43) and this is only the backstop for a runner that hangs.
    deadline_grace_seconds: int = 120
    # SIGTERM to SIGKILL for a shard: time to commit the part in flight and its checkpoint.
    termination_grace_seconds: int = 60
    finalize_backoff_limit: int = 2
    # The plan pod: one streaming pass over the input with bounded memory, on a CPU node.
    plan_backoff_limit: int = 2
    plan_cpu: str = "500m"
    plan_memory: str = "1Gi"
    # After the deadline, shards get this long to stop by themselves (runner grace period
    # 20 s, plus margin) before the operator suspends the Job.
    expire_stop_grace_seconds: float = 45.0
    # Polling intervals of the per-BatchJob daemon; Job watch events wake it earlier.
    active_interval: float = 2.5
    idle_interval: float = 30.0
    # Progress-only status changes are written at most this often per BatchJob.
    progress_write_interval: float = 5.0
    # 0: no limit. The plan step streams an input of any size with bounded memory; a limit
    # here refuses larger inputs at validation (LLMBATCH_MAX_INPUT_BYTES).
    max_input_bytes: int = 0
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    # Extra environment for runner pods, e.g. VLLM_CPU_KVCACHE_SPACE on CPU clusters.
    runner_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # spec.notify webhooks may target loopback, link-local and private addresses.
    webhooks_allow_private_targets: bool = False
    # The elastic-shards policy (spec.maxParallelism): rate window, interval, margin, hysteresis.
    scaling: ScalingSettings = field(default_factory=ScalingSettings)

    @classmethod
    def from_env(cls) -> OperatorConfig:
        """The configuration from LLMBATCH_* variables; raises ConfigError on a bad value."""
        base = cls()
        extra = tuple(
            sorted(
                (key[len("LLMBATCH_RUNNER_ENV_") :], value)
                for key, value in os.environ.items()
                if key.startswith("LLMBATCH_RUNNER_ENV_") and len(key) > len("LLMBATCH_RUNNER_ENV_")
            )
        )
        namespaces = tuple(
            ns.strip() for ns in os.environ.get("LLMBATCH_NAMESPACES", "").split(",") if ns.strip()
        )
        return replace(
            base,
            runner_image=os.environ.get("LLMBATCH_RUNNER_IMAGE") or base.runner_image,
            default_s3_endpoint=os.environ.get("LLMBATCH_DEFAULT_S3_ENDPOINT") or None,
            default_s3_region=os.environ.get("LLMBATCH_DEFAULT_S3_REGION") or None,
            metrics_port=_env_int("LLMBATCH_METRICS_PORT", base.metrics_port),
            liveness_endpoint=os.environ.get("LLMBATCH_LIVENESS") or base.liveness_endpoint,
            deadline_grace_seconds=_env_int("LLMBATCH_DEADLINE_GRACE", base.deadline_grace_seconds),
            active_interval=_env_float("LLMBATCH_ACTIVE_INTERVAL", base.active_interval),
            idle_interval=_env_float("LLMBATCH_IDLE_INTERVAL", base.idle_interval),
            progress_write_interval=_env_float(
                "LLMBATCH_PROGRESS_INTERVAL", base.progress_write_interval
            ),
            plan_cpu=os.environ.get("LLMBATCH_PLAN_CPU") or base.plan_cpu,
            plan_memory=os.environ.get("LLMBATCH_PLAN_MEMORY") or base.plan_memory,
            max_input_bytes=_env_int("LLMBATCH_MAX_INPUT_BYTES", base.max_input_bytes),
            expire_stop_grace_seconds=_env_float(
                "LLMBATCH_EXPIRE_STOP_GRACE", base.expire_stop_grace_seconds
            ),
            namespaces=namespaces,
            runner_env=extra,
            webhooks_allow_private_targets=os.environ.get(
                "LLMBATCH_WEBHOOKS_ALLOW_PRIVATE_TARGETS", ""
            ).lower()
            in ("1", "true", "yes"),
            scaling=scaling_from_env(os.environ),
        )


_active: OperatorConfig | None = None


def set_active(config: OperatorConfig) -> None:
    """Called by ``llmbatch operator`` before kopf starts; ``kopf run`` falls back to env."""
    global _active
    _active = config


def active() -> OperatorConfig:
    global _active
    if _active is None:
        _active = OperatorConfig.from_env()
    return _active
