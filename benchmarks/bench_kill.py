"""Kill benchmark: two shards SIGKILLed mid-chunk; what it costs and what it loses.

    python benchmarks/bench_kill.py                    # 3 rounds of 12,000 lines
    python benchmarks/bench_kill.py --rounds 1         # the short form (about 3 minutes)
    python benchmarks/bench_kill.py --write-results    # also update RESULTS.md

On the sandbox, with the real operator and runner (chunks of 1,000 lines, leases of 10 s, as
tests/e2e/test_data_plane.py sets them): each round applies a BatchJob of ``--requests`` chat
lines (the tiny model, max_tokens 16, 3 shards), waits until two shards are each more than 50
lines into a chunk, SIGKILLs both pods (the sandbox kubelet's kill annotation), and waits for
Succeeded. Then, per round: the chunks whose lease was taken over, the lines recomputed
(answered by a killed attempt, never committed, answered again: the shards' progress counters
minus the lines in the committed parts; a lower bound by what a killed attempt answered after
its last progress write, one second), and whether every input line is in exactly one of
output.jsonl and errors.jsonl with counts equal to the status. Target: at most one chunk
(1,000 lines) recomputed per kill; every line exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tests.e2e.cluster import Kubectl, operator_running, wait_for  # noqa: E402
from tests.e2e.conftest import SECRET  # noqa: E402
from tests.e2e.test_data_plane import (  # noqa: E402
    CHUNK_LINES,
    LEASE_SECONDS,
    NAMESPACE,
    batchjob,
    chunk_writers,
    progress_of,
    shards_mid_chunk,
    upload,
)
from tests.e2e.test_lifecycle import assert_exactly_once  # noqa: E402
from tests.fixtures.sandbox import SandboxInfo, start_sandbox, stop_sandbox  # noqa: E402

from bench_elastic import upload_model  # noqa: E402
from bench_runner import Report, machine_load  # noqa: E402
from llmbatch.api.layout import OutputLayout  # noqa: E402
from llmbatch.storage import ObjectStore  # noqa: E402
from llmbatch_sandbox.models import TINY_SERVED_NAME  # noqa: E402
from results_section import replace_section  # noqa: E402

ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}
KILLS = 2


@dataclass
class Round:
    kills: int
    taken_over: list[int]
    recomputed: int
    exactly_once: str
    seconds: float


def one_round(
    kubectl: Kubectl, store: ObjectStore, sandbox: SandboxInfo, model: str, requests: int
) -> Round:
    body = batchjob(sandbox, model, TINY_SERVED_NAME, "kill", maxRetries=3)
    upload(store, body, requests, TINY_SERVED_NAME, max_tokens=16)
    name, output = body["metadata"]["name"], body["spec"]["output"]
    started = time.monotonic()
    if kubectl.apply(body).returncode != 0:
        raise SystemExit(f"kubectl apply of {name} failed")

    victims = wait_for(
        "two shards mid-chunk",
        lambda: shards_mid_chunk(kubectl, store, name, output, KILLS),
        timeout=300,
    )
    for pod in victims:
        kubectl.run("annotate", "pod", pod["metadata"]["name"], "sandbox.llmbatch.io/kill=SIGKILL")
    status = kubectl.wait_phase(name, "Succeeded", timeout=900)
    seconds = time.monotonic() - started
    try:
        assert_exactly_once(store, body, status, requests)
        once = "yes"
    except AssertionError as exc:
        once = f"NO: {exc}"
    committed = sum(sum(by.values()) for by in chunk_writers(store, output).values())
    recomputed = sum(progress_of(store, output).values()) - committed
    leases = [
        json.loads(store.read_bytes(info.uri))
        for info in store.list(OutputLayout(output).leases_dir)
        if info.uri.endswith(".json")
    ]
    taken = sorted(int(lease["chunk"]) for lease in leases if lease.get("takeovers"))
    return Round(len(victims), taken, recomputed, once, seconds)


def run_rounds(args: argparse.Namespace) -> list[Round]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-kill-"))
    os.environ.update(ENV)
    sandbox = start_sandbox(workdir / "sandbox")
    try:
        kubectl = Kubectl(sandbox, NAMESPACE)
        kubectl.prepare_namespace(SECRET)
        store = sandbox.store()
        model = upload_model(sandbox, store, "bench-kill")
        runner_env = {
            "LLMBATCH_PROGRESS_SECONDS": "1",
            "LLMBATCH_LEASE_SECONDS": str(LEASE_SECONDS),
            "LLMBATCH_LEASE_RENEW_SECONDS": "2",
            "LLMBATCH_CHUNK_LINES": str(CHUNK_LINES),
            **ENV,
        }
        rounds = []
        with operator_running(sandbox, NAMESPACE, workdir / "operator.log", runner_env):
            for number in range(args.rounds):
                done = one_round(kubectl, store, sandbox, model, args.requests)
                print(
                    f"  round {number + 1}: {done.kills} kills, chunks taken over "
                    f"{done.taken_over}, {done.recomputed} lines recomputed, exactly once: "
                    f"{done.exactly_once} ({done.seconds:.0f} s)",
                    flush=True,
                )
                rounds.append(done)
        return rounds
    finally:
        if sandbox.process is not None:
            stop_sandbox(sandbox.process)


def report_of(rounds: list[Round], requests: int) -> Report:
    report = Report()
    for number, done in enumerate(rounds, 1):
        report.add(
            f"round {number}: {requests:,} lines, 3 shards, {done.kills} SIGKILLed mid-chunk",
            f"chunks taken over {done.taken_over}; {done.recomputed} lines recomputed; "
            f"Succeeded in {done.seconds:.0f} s",
        )
    worst = max(done.recomputed / max(done.kills, 1) for done in rounds)
    report.add(
        "lines recomputed per kill, worst round",
        f"{worst:.0f}",
        f"<= {CHUNK_LINES} (one chunk)",
    )
    once = sum(1 for done in rounds if done.exactly_once == "yes")
    report.add("rounds with every line exactly once", f"{once}/{len(rounds)}", "all")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=12_000)
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    load_before = machine_load()
    print(f"machine: {load_before}", flush=True)
    rounds = run_rounds(args)
    report = report_of(rounds, args.requests)
    print()
    print(report.table())
    if args.write_results:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        replace_section(
            "kill-bench",
            "\n".join(
                [
                    "## Shards killed mid-chunk (`benchmarks/bench_kill.py`)",
                    "",
                    f"Run {stamp}: `bench_kill.py --rounds {args.rounds} --requests "
                    f"{args.requests}`; sandbox, real operator and runner, tiny model, "
                    f"max_tokens 16, chunks of {CHUNK_LINES} lines, leases of {LEASE_SECONDS} s; "
                    f"machine {load_before} at the start, {machine_load()} at the end.",
                    "",
                    report.table(),
                    "",
                    "- Recomputed: the shards' progress counters (which go on across attempts) "
                    "minus the lines in the committed parts, where no line is written twice; a "
                    "lower bound by what a killed attempt answered after its last progress "
                    "write (one second).",
                ]
            ),
        )


if __name__ == "__main__":
    from children import end_children_with_this_process

    end_children_with_this_process()
    main()
