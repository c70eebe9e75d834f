"""Prometheus metrics of a runner pod, on their own registry and port."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger(__name__)

DEFAULT_PORT = 9400


class RunnerMetrics:
    def __init__(self, batch: str, shard: int) -> None:
        self.registry = CollectorRegistry()
        labels = ["batch", "shard"]
        values = (batch, str(shard))
        self.requests = Counter(
            "llmbatch_runner_requests",
            "Requests finished by this shard, by outcome (completed or failed).",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self._completed = self.requests.labels(*values, "completed")
        self._failed = self.requests.labels(*values, "failed")
        self.prompt_tokens = Counter(
            "llmbatch_runner_prompt_tokens",
            "Prompt tokens processed.",
            labels,
            registry=self.registry,
        ).labels(*values)
        self.completion_tokens = Counter(
            "llmbatch_runner_completion_tokens",
            "Completion tokens generated.",
            labels,
            registry=self.registry,
        ).labels(*values)
        self.throughput = Gauge(
            "llmbatch_runner_throughput_tokens_per_second",
            "Prompt plus completion tokens per second over this attempt.",
            labels,
            registry=self.registry,
        ).labels(*values)
        self.queue_depth = Gauge(
            "llmbatch_runner_queue_depth",
            "Requests handed to the engine and not finished.",
            labels,
            registry=self.registry,
        ).labels(*values)

    def finished(self, ok: bool, prompt_tokens: int, completion_tokens: int) -> None:
        (self._completed if ok else self._failed).inc()
        self.prompt_tokens.inc(prompt_tokens)
        self.completion_tokens.inc(completion_tokens)

    def serve(self, port: int) -> bool:
        """Serve /metrics on ``port`` (0: don't). A busy port costs the metrics, not the run."""
        if port <= 0:
            return False
        try:
            start_http_server(port, registry=self.registry)
        except OSError as exc:
            log.warning("metrics server not started on port %d: %s", port, exc)
            return False
        return True
