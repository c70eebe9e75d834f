"""Soak: many BatchJobs at once with runner pods SIGKILLed and S3 faults on, end to end.

    .venv/bin/python benchmarks/bench_soak.py [--batchjobs 50] [--requests 200] [--minutes 10]
        [--gpu-slots 3] [--kill-every 20] [--s3-fault-rate 0.05] [--chunk-lines 50] [--seed 7]

Starts a sandbox (API emulator, Job controller, kubelet, moto S3) and the real operator, puts an
S3 fault proxy (seeded 5xx, throttling, resets, slow answers) between the runner pods and S3,
creates --batchjobs BatchJobs of --requests chat requests each on the tiny model, and while they
run SIGKILLs, every --kill-every seconds, a random shard pod that is answering requests. When
every BatchJob is finished (or --minutes passed) it reads every output and prints a Markdown
table:

- completed: BatchJobs that reached Succeeded;
- lost / duplicated: input lines missing from, or repeated across, output.jsonl + errors.jsonl
  (both must be 0);
- recomputed: requests answered by an attempt that died before committing them, so answered
  again: what the shards' progress counted (each attempt goes on from its predecessor's
  counters) minus the distinct lines in the chunk parts, a lower bound as progress is published
  every half second. Per kill, the growth of that figure across the kill (it also takes in an
  attempt that an S3 fault ended since the batch's previous kill). A kill costs at most the
  chunk being finished (--chunk-lines) plus the engine's window (MAX_IN_FLIGHT);
- committed twice: lines answered in more than one part of their chunk (a shard that lost its
  lease in a stall); finalize keeps the first answer;
- last runner exit -> terminal status: per BatchJob, from the last shard container's
  finishedAt to the status' completion time (p50, p99, max; second resolution).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chaos.harness import (  # noqa: E402
    NAMESPACE,
    SECRET,
    TERMINAL,
    Batch,
    make_batch,
    read_parts,
    uncommitted_answers,
)
from tests.e2e.cluster import Kubectl, OperatorProcess, jsonl  # noqa: E402
from tests.fixtures.sandbox import start_sandbox, stop_sandbox  # noqa: E402

from llmbatch.api.layout import OutputLayout  # noqa: E402
from llmbatch.storage import ObjectNotFound, ObjectStore  # noqa: E402
from llmbatch_sandbox.models import ensure_model  # noqa: E402
from llmbatch_sandbox.s3faults import FaultConfig, running_proxy  # noqa: E402

# The engine's window per shard: with the chunk size, the bound on what a kill costs.
MAX_IN_FLIGHT = 64


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class Killer:
    """SIGKILLs a random running shard pod every ``every`` seconds; measures recomputation."""

    def __init__(
        self, kubectl: Kubectl, store: ObjectStore, batches: list[Batch], every: float, seed: int
    ) -> None:
        self.kubectl, self.store, self.batches = kubectl, store, batches
        self.every = every
        self.rng = random.Random(seed)
        self.kills = 0
        self.per_kill: list[int] = []
        # Per BatchJob: uncommitted answers after its last kill.
        self._lost: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _loop(self) -> None:
        by_job = {f"{b.name}-run": b for b in self.batches}
        while not self._stop.wait(self.every):
            try:
                pods = [
                    p
                    for p in self.kubectl.items("pods", "llmbatch.io/role=run")
                    if p["status"].get("phase") == "Running" and self._working(p, by_job)
                ]
                if pods:
                    self._kill(self.rng.choice(pods), by_job)
            except Exception as exc:  # a failed kill round is not the system's failure
                print(f"kill round failed: {exc}", file=sys.stderr)

    def _working(self, pod: dict[str, Any], by_job: dict[str, Batch]) -> bool:
        """The pod's runner is at work: its progress record is newer than the pod's start.
        It writes that record before loading the model, so a kill lands anywhere in the
        attempt; with 200 requests answered in one engine wave of about two seconds after a
        model load several times as long, most kills land in the load and recompute nothing
        (the runner benchmark and the chaos suite measure kills during answering)."""
        batch = by_job.get((pod["metadata"].get("labels") or {}).get("job-name", ""))
        started = parse_time((pod.get("status") or {}).get("startTime"))
        if batch is None or started is None:
            return False
        try:
            record = json.loads(self.store.read_bytes(OutputLayout(batch.output).progress(0)))
        except ObjectNotFound:
            return False
        updated = parse_time(record.get("updatedAt"))
        return record.get("state") == "running" and updated is not None and updated > started

    def _kill(self, pod: dict[str, Any], by_job: dict[str, Batch]) -> None:
        meta = pod["metadata"]
        batch = by_job.get((meta.get("labels") or {}).get("job-name", ""))
        if batch is None:
            return
        name = meta["name"]
        self.kubectl.run("annotate", "--overwrite", "pod", name, "sandbox.llmbatch.io/kill=SIGKILL")
        self.kills += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = self.kubectl.get("pod", name)
            if body is None or (body.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                break
            time.sleep(0.2)
        # The process is gone: its parts and last progress are its last word.
        lost = uncommitted_answers(self.store, batch.output)
        self.per_kill.append(max(0, lost - self._lost.get(batch.name, 0)))
        self._lost[batch.name] = lost


def ledger(store: ObjectStore, batch: Batch) -> tuple[int, int]:
    """(lost, duplicated) lines of a finished batch."""
    ids: collections.Counter[str] = collections.Counter()
    for kind in ("output", "errors"):
        try:
            data = store.read_bytes(f"{batch.output}/{kind}.jsonl")
        except ObjectNotFound:
            continue
        ids.update(line["custom_id"] for line in jsonl(data))
    lost = len(set(batch.custom_ids) - set(ids))
    duplicated = sum(count - 1 for count in ids.values() if count > 1)
    return lost, duplicated


def exit_to_terminal(kubectl: Kubectl, batch: Batch, status: dict[str, Any]) -> float | None:
    finished = []
    for pod in kubectl.items("pods", f"job-name={batch.name}-run"):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            done = parse_time(
                ((container.get("state") or {}).get("terminated") or {}).get("finishedAt")
            )
            if done is not None:
                finished.append(done)
    stamps = status.get("timestamps") or {}
    end = parse_time(status.get("completionTime")) or parse_time(
        stamps.get("completedAt") or stamps.get("failedAt")
    )
    if not finished or end is None:
        return None
    return max(0.0, end - max(finished))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batchjobs", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--gpu-slots", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=20.0)
    parser.add_argument("--s3-fault-rate", type=float, default=0.05)
    parser.add_argument("--chunk-lines", type=int, default=50, help="lines per chunk of the plan")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    model = ensure_model("tiny")
    with tempfile.TemporaryDirectory(prefix="llmbatch-soak-") as tmp:
        work = Path(tmp)
        sandbox = start_sandbox(work / "sandbox", ["--gpu-slots", str(args.gpu_slots)])
        assert sandbox.process is not None
        kubectl = Kubectl(sandbox, NAMESPACE)
        kubectl.prepare_namespace(SECRET)
        store = sandbox.store()
        # Short leases: a killed shard's chunk is taken over within seconds, not a minute.
        runner_env = {
            "LLMBATCH_CHUNK_LINES": str(args.chunk_lines),
            "LLMBATCH_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
            "LLMBATCH_LEASE_SECONDS": "10",
            "LLMBATCH_LEASE_RENEW_SECONDS": "2",
            "LLMBATCH_PROGRESS_SECONDS": "0.5",
            "LLMBATCH_RUNNER_METRICS_PORT": "0",
        }
        operator = OperatorProcess(
            sandbox,
            NAMESPACE,
            work / "operator.log",
            extra_env={f"LLMBATCH_RUNNER_ENV_{k}": v for k, v in runner_env.items()},
        )
        operator.start()
        faults = FaultConfig.uniform(args.s3_fault_rate, seed=args.seed)
        try:
            with running_proxy(sandbox.s3_endpoint, faults) as proxy:
                storage = {"secretRef": {"name": "llmbatch-s3"}, "endpoint": proxy.url}
                batches = [
                    make_batch(
                        sandbox,
                        store,
                        model,
                        f"soak{i:02d}",
                        requests=args.requests,
                        maxRetries=10,
                        storage=storage,
                    )
                    for i in range(args.batchjobs)
                ]
                started = time.monotonic()
                for batch in batches:
                    result = kubectl.apply(batch.body)
                    assert result.returncode == 0, result.stderr
                killer = Killer(kubectl, store, batches, args.kill_every, args.seed)
                killer.start()
                statuses: dict[str, dict[str, Any]] = {}
                deadline = started + args.minutes * 60
                while time.monotonic() < deadline and len(statuses) < len(batches):
                    for item in kubectl.items("batchjobs"):
                        status = item.get("status") or {}
                        if status.get("phase") in TERMINAL:
                            statuses[item["metadata"]["name"]] = status
                    time.sleep(2.0)
                elapsed = time.monotonic() - started
                killer.stop()
                injected = proxy.proxy.injected
        finally:
            operator.stop(signal.SIGTERM)
        phases = collections.Counter(s.get("phase") for s in statuses.values())
        lost = duplicated = recomputed = twice = 0
        latencies = []
        for batch in batches:
            status = statuses.get(batch.name)
            if status is None:
                continue
            missing, repeated = ledger(store, batch)
            lost += missing
            duplicated += repeated
            recomputed += uncommitted_answers(store, batch.output)
            twice += read_parts(store, batch.output).recomputed
            latency = exit_to_terminal(kubectl, batch, status)
            if latency is not None:
                latencies.append(latency)
        stop_sandbox(sandbox.process)

    print(f"\n## Soak ({args.batchjobs} BatchJobs x {args.requests} requests)\n")
    print("| Measure | Result |")
    print("|---|---|")
    print(f"| Wall time | {elapsed:.0f} s (limit {args.minutes:.0f} min) |")
    print(f"| BatchJobs finished | {len(statuses)} / {len(batches)} ({dict(phases)}) |")
    print(f"| Completed (Succeeded) | {phases.get('Succeeded', 0)} |")
    print(f"| Lost lines | {lost} |")
    print(f"| Duplicated lines | {duplicated} |")
    print(f"| Runner pods SIGKILLed | {killer.kills} |")
    print(
        f"| Recomputed requests (observed) | {recomputed} "
        f"(max {max(killer.per_kill, default=0)} per kill; chunks of {args.chunk_lines} "
        f"lines, window {MAX_IN_FLIGHT}) |"
    )
    print(f"| Lines committed twice | {twice} |")
    print(f"| S3 faults injected | {injected} (rate {args.s3_fault_rate}) |")
    if latencies:
        print(
            f"| Last runner exit -> terminal status | p50 {statistics.median(latencies):.0f} s, "
            f"p99 {percentile(latencies, 99):.0f} s, max {max(latencies):.0f} s |"
        )
    print(f"| Requests in the batches | {sum(len(b.custom_ids) for b in batches)} |")


if __name__ == "__main__":
    from children import end_children_with_this_process

    end_children_with_this_process()
    main()
