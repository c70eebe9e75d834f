"""Backend ray against backend vllm: the same chat batch through ``llmbatch-runner`` with
``--backend vllm`` and ``--backend ray`` (one pod: a local Ray instance and Ray Data's LLM
pipeline), greedy content compared per custom_id, wall times and where the Ray run's time goes.

    python benchmarks/bench_ray.py                       # 500 requests, the tiny model
    python benchmarks/bench_ray.py --requests 40 --rounds 1 --chunk-lines 20   # short

Each contender is the shard's process as a pod runs it (plan first, untimed and shared by
neither: each has its own output), whole process timed, start-up included; rounds alternate
which goes first. The Ray run's own log lines give its breakdown: Ray start and processor
build, and per dataset (one per chunk) its time and the wait for its first row back (the vLLM
engine starts per dataset, and rows come back a finished output block at a time, so the first
row includes the engine start and the first block's inference). With ``--chunk-lines`` below
the request count, the datasets after the first show the per-chunk cost. Prints a table;
RESULTS.md is the lead's to update.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runner import Report, contents, machine_load, make_requests

ENGINE_ARGS: dict[str, Any] = {"max_model_len": 512, "seed": 0}
_STARTED = re.compile(r"ray started in ([0-9.]+) s")
_DATASET = re.compile(r"ray dataset done: (\d+) rows in ([0-9.]+) s, first row after ([0-9.]+) s")


@dataclass
class RunTimes:
    wall: float
    ray_start: float = 0.0
    datasets: list[tuple[int, float, float]] = field(default_factory=list)


def _runner(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    command = [sys.executable, "-m", "llmbatch.runner.cli", *args]
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-4000:]
        raise SystemExit(f"llmbatch-runner {args[0]} failed with exit {done.returncode}:\n{tail}")
    return done


def run_backend(
    source: Path, out: Path, model: Path, name: str, backend: str, chunk_lines: int
) -> RunTimes:
    batch = ["--input", str(source), "--output", str(out), "--model", str(model)]
    batch += ["--served-model-name", name]
    _runner("plan", *batch, "--chunk-lines", str(chunk_lines))
    started = time.perf_counter()
    run = _runner(
        "run", *batch, "--engine-args", json.dumps(ENGINE_ARGS), "--metrics-port", "0",
        "--backend", backend,
    )  # fmt: skip
    times = RunTimes(time.perf_counter() - started)
    log = run.stderr.decode(errors="replace")
    if match := _STARTED.search(log):
        times.ray_start = float(match.group(1))
    times.datasets = [(int(r), float(s), float(f)) for r, s, f in _DATASET.findall(log)]
    _runner("finalize", "--input", str(source), "--output", str(out))
    return times


def _same(ours: dict[str, str], theirs: dict[str, str]) -> str:
    same = sum(ours.get(cid) == text for cid, text in theirs.items())
    return f"{same}/{len(theirs)} identical"


def bench(args: argparse.Namespace, work: Path, report: Report) -> None:
    from llmbatch_sandbox.models import TINY_SERVED_NAME, ensure_model

    model = ensure_model("tiny")
    source = work / "input.jsonl"
    lines = make_requests(args.requests, args.max_tokens, TINY_SERVED_NAME)
    source.write_bytes(b"\n".join(lines) + b"\n")
    times: dict[str, list[RunTimes]] = {"vllm": [], "ray": []}
    answers: dict[str, dict[str, str]] = {}
    for round_ in range(args.rounds):
        order = ["vllm", "ray"] if round_ % 2 == 0 else ["ray", "vllm"]
        for backend in order:
            out = work / f"{backend}-{round_}"
            ran = run_backend(source, out, model, TINY_SERVED_NAME, backend, args.chunk_lines)
            times[backend].append(ran)
            answers[backend] = contents((out / "output.jsonl").read_bytes().splitlines())
            print(f"round {round_ + 1} {backend}: {ran.wall:.1f} s", flush=True)
    vllm = statistics.median(t.wall for t in times["vllm"])
    ray = statistics.median(t.wall for t in times["ray"])
    chunks = -(-args.requests // args.chunk_lines)
    what = f"{args.requests} chat requests, max_tokens {args.max_tokens}, {chunks} chunk(s)"
    report.add(f"backend vllm run ({what})", f"{vllm:.1f} s (median of {args.rounds})")
    report.add(f"backend ray run ({what})", f"{ray:.1f} s (median of {args.rounds})")
    report.add("wall-time ratio ray / vllm", f"{ray / vllm:.2f}x")
    last = times["ray"][-1]
    report.add("ray: Ray start + processor build", f"{last.ray_start:.1f} s")
    for number, (rows, seconds, first) in enumerate(last.datasets, start=1):
        report.add(
            f"ray: dataset {number} ({rows} rows)",
            f"{seconds:.1f} s, first row back after {first:.1f} s",
        )
    rest = last.wall - last.ray_start - sum(s for _, s, _ in last.datasets)
    report.add("ray: the rest (imports, plan read, commits)", f"{rest:.1f} s")
    report.add("greedy content per custom_id", _same(answers["ray"], answers["vllm"]))
    report.add("answered (ray / vllm)", f"{len(answers['ray'])} / {len(answers['vllm'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--chunk-lines", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    load_before = machine_load()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="llmbatch-bench-ray-") as tmp:
        bench(args, Path(tmp), report)
    print()
    print(report.table())
    print(f"\nmachine: {load_before} before, {machine_load()} after")


if __name__ == "__main__":
    from children import end_children_with_this_process

    end_children_with_this_process()
    main()
