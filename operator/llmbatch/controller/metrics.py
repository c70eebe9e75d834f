"""Prometheus metrics of the operator (served by ``llmbatch operator --metrics-port``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from llmbatch.api.phases import Phase
from llmbatch.api.timefmt import parse_time

BATCHJOBS = Gauge("llmbatch_batchjobs", "BatchJobs by phase", ["phase"])
TRANSITIONS = Counter(
    "llmbatch_phase_transitions_total", "Phase transitions written", ["from", "to"]
)
RECONCILE_SECONDS = Histogram(
    "llmbatch_reconcile_duration_seconds",
    "Time of one reconcile of one BatchJob",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SLA_AT_RISK = Gauge("llmbatch_sla_at_risk", "Unfinished BatchJobs whose ETA is past the deadline")
REQUESTS_COMPLETED = Counter(
    "llmbatch_requests_completed_total", "Requests finished (completed or failed) by shards"
)
TOKENS_COMPLETED = Counter(
    "llmbatch_tokens_completed_total", "Tokens processed by shards", ["kind"]
)
STATUS_PATCHES = Counter("llmbatch_status_patches_total", "Status writes to BatchJobs")
# Per unfinished BatchJob (removed when it finishes): the dashboard's "ETA versus deadline".
ETA_TIMESTAMP = Gauge(
    "llmbatch_batchjob_eta_timestamp_seconds",
    "status.eta of an unfinished BatchJob as a Unix time",
    ["namespace", "batchjob"],
)
DEADLINE_TIMESTAMP = Gauge(
    "llmbatch_batchjob_deadline_timestamp_seconds",
    "status.deadline of an unfinished BatchJob as a Unix time",
    ["namespace", "batchjob"],
)


class Tracker:
    """Per-BatchJob memory behind the gauges and the counters' deltas (keyed by uid)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phase: dict[str, str] = {}
        self._at_risk: set[str] = set()
        self._seen: dict[str, tuple[int, int, int]] = {}
        self._names: dict[str, tuple[str, str]] = {}

    def observe(
        self, uid: str, status: Mapping[str, Any], namespace: str = "", name: str = ""
    ) -> None:
        phase = str(status.get("phase") or Phase.VALIDATING.value)
        at_risk = any(
            c.get("type") == "SLAAtRisk" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        counts = status.get("requestCounts") or {}
        usage = status.get("usage") or {}
        now_seen = (
            int(counts.get("completed", 0)) + int(counts.get("failed", 0)),
            int(usage.get("promptTokens", 0)),
            int(usage.get("completionTokens", 0)),
        )
        with self._lock:
            self._phase[uid] = phase
            if at_risk and not Phase(phase).is_terminal():
                self._at_risk.add(uid)
            else:
                self._at_risk.discard(uid)
            before = self._seen.get(uid)
            self._seen[uid] = now_seen
            # The first sight after a start is the baseline: counters restart with the process.
            if before is not None:
                done, prompt, completion = (
                    max(0, a - b) for a, b in zip(now_seen, before, strict=True)
                )
                REQUESTS_COMPLETED.inc(done)
                TOKENS_COMPLETED.labels("prompt").inc(prompt)
                TOKENS_COMPLETED.labels("completion").inc(completion)
            if name:
                self._times(uid, (namespace, name), status, Phase(phase).is_terminal())
            self._refresh()

    def _times(
        self, uid: str, key: tuple[str, str], status: Mapping[str, Any], finished: bool
    ) -> None:
        eta = parse_time(status.get("eta"))
        deadline = parse_time(status.get("deadline"))
        if finished or deadline is None:
            self._drop_times(uid)
            return
        self._names[uid] = key
        DEADLINE_TIMESTAMP.labels(*key).set(deadline.timestamp())
        if eta is not None:
            ETA_TIMESTAMP.labels(*key).set(eta.timestamp())
        else:
            with contextlib.suppress(KeyError):
                ETA_TIMESTAMP.remove(*key)

    def _drop_times(self, uid: str) -> None:
        key = self._names.pop(uid, None)
        if key is None:
            return
        for gauge in (ETA_TIMESTAMP, DEADLINE_TIMESTAMP):
            with contextlib.suppress(KeyError):
                gauge.remove(*key)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._phase.pop(uid, None)
            self._at_risk.discard(uid)
            self._seen.pop(uid, None)
            self._drop_times(uid)
            self._refresh()

    def _refresh(self) -> None:
        totals = dict.fromkeys((p.value for p in Phase), 0)
        for phase in self._phase.values():
            totals[phase] = totals.get(phase, 0) + 1
        for phase, count in totals.items():
            BATCHJOBS.labels(phase).set(count)
        SLA_AT_RISK.set(len(self._at_risk))


TRACKER = Tracker()
_started: set[int] = set()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Start the /metrics endpoint once per port (0 disables it)."""
    if port and port not in _started:
        start_http_server(port, addr=addr)
        _started.add(port)
