"""JSON logs: one object per line with time, level, logger, message, and the batch, shard and
custom_id a line is about (passed as ``extra={"custom_id": ...}``)."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

_FIELDS = ("batch", "shard", "custom_id", "line")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                payload[name] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


class ContextFilter(logging.Filter):
    """Stamps batch and shard on every record that lacks them."""

    def __init__(self, batch: str, shard: int | None) -> None:
        super().__init__()
        self.batch = batch
        self.shard = shard

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "batch", None) is None:
            record.batch = self.batch
        if getattr(record, "shard", None) is None:
            record.shard = self.shard
        return True


def configure_json_logging(batch: str, shard: int | None, level: int = logging.INFO) -> None:
    """Send every log record of the process to stderr as JSON (called by the runner CLI only).

    vLLM is told not to install its own handlers (VLLM_CONFIGURE_LOGGING=0, unless the pod
    sets it), so its records reach the root logger and come out in the same format.
    """
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter(batch, shard))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logger = logging.getLogger("llmbatch")
    logger.handlers[:] = []
    logger.setLevel(level)
    logger.propagate = True
    logging.captureWarnings(True)  # library warnings as JSON records too
