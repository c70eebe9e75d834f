"""Pydantic models: the single source of truth for the BatchJob API and the OpenAI batch
line formats. The CRD in crds/ is generated from here (``make crds``)."""

from llmbatch.api.batchjob import (
    BatchError,
    BatchJob,
    BatchJobSpec,
    BatchJobStatus,
    Condition,
    ModelSpec,
    RequestCounts,
    ResourcesSpec,
    SecretRef,
    ShardStatus,
    StorageSpec,
    Timestamps,
    Usage,
)
from llmbatch.api.conditions import ConditionType, Reason
from llmbatch.api.durations import parse_duration
from llmbatch.api.lines import (
    Endpoint,
    ErrorCode,
    FileValidator,
    InputLine,
    Limits,
    LineError,
    LineRule,
    OutputLine,
    ValidLine,
    iter_validated,
)
from llmbatch.api.phases import Phase

__all__ = [
    "BatchError",
    "BatchJob",
    "BatchJobSpec",
    "BatchJobStatus",
    "Condition",
    "ConditionType",
    "Endpoint",
    "ErrorCode",
    "FileValidator",
    "InputLine",
    "Limits",
    "LineError",
    "LineRule",
    "ModelSpec",
    "OutputLine",
    "Phase",
    "Reason",
    "RequestCounts",
    "ResourcesSpec",
    "SecretRef",
    "ShardStatus",
    "StorageSpec",
    "Timestamps",
    "Usage",
    "ValidLine",
    "iter_validated",
    "parse_duration",
]
