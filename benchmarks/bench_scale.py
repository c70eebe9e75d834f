"""Scale benchmark: plan + run + finalize of a large batch, as the operator's pods run them.

    python benchmarks/bench_scale.py                           # 100,000 and 1,000,000 lines
    python benchmarks/bench_scale.py --sizes 2000,20000        # the short form (a minute)
    python benchmarks/bench_scale.py --write-results           # also update RESULTS.md

For each size: a chat batch of N lines (max_tokens 1, the tiny model) is put into the
sandbox's S3 (moto, with the conditional writes the leases use); then the same commands the
plan, run and finalize pods run (``llmbatch-runner plan``, ``--shard-count`` shards of
``llmbatch-runner run`` at once, ``llmbatch-runner finalize``) run as processes here, their S3
endpoint a counting proxy in front of moto. Printed per size: each step's time and peak RSS
(ru_maxrss; for the shards the largest, engine in-process), and the bytes served by S3 GETs of
the input object divided by its size (each byte should be read about twice: once by the plan,
once by the shard that claims its chunk). The output is checked: every custom_id once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runner import ENGINE_ARGS, Report, machine_load, measured, peak_rss_of
from llmbatch.api.layout import OutputLayout
from llmbatch.storage import ObjectStore, StorageSettings, get_store
from llmbatch_sandbox.s3 import SandboxS3
from llmbatch_sandbox.s3faults import FaultConfig, ProxyThread, S3FaultProxy
from results_section import replace_section

SERVED = "tiny-qwen"
TINY_ENGINE = {**ENGINE_ARGS, "max_model_len": 128}
_WORDS = [
    "batch",
    "shard",
    "queue",
    "engine",
    "token",
    "model",
    "request",
    "output",
    "input",
    "cluster",
    "node",
]


class CountingProxy(S3FaultProxy):
    """The fault proxy with no faults, counting the body bytes of GET answers per object."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, FaultConfig())
        self.get_bytes: Counter[str] = Counter()
        self.gets: Counter[str] = Counter()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = await super()._handle(request)
        if request.method == "GET":
            key = request.path
            self.gets[key] += 1
            self.get_bytes[key] += response.content_length or 0
        return response


@dataclass
class Step:
    seconds: float
    peak_rss_mb: float


def write_input(path: Path, lines: int, seed: int = 11) -> int:
    """N chat lines of varied length, max_tokens 1; returns the file's size."""
    rng = random.Random(seed)
    with path.open("wb") as handle:
        for i in range(lines):
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
            body = {
                "model": SERVED,
                "messages": [{"role": "user", "content": f"{i}: {words}"}],
                "max_tokens": 1,
                "temperature": 0,
            }
            row = {"custom_id": f"s-{i}", "method": "POST", "url": "/v1/chat/completions"}
            handle.write(json.dumps({**row, "body": body}).encode() + b"\n")
    return path.stat().st_size


def run_processes(commands: list[list[str]], env: dict[str, str], what: str) -> Step:
    """Start the commands at once; wait for all; the largest peak RSS of them (each measured
    through bench_runner's launcher: this process holds the S3 server's data, and a child
    spawned from it would report this process's size as its own peak)."""
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="llmbatch-rss-"))
    reports = [scratch / f"maxrss-{i}" for i in range(len(commands))]
    procs = [
        subprocess.Popen(
            measured(c, report), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for c, report in zip(commands, reports, strict=True)
    ]
    failures: list[str] = []
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"exit {proc.returncode}: {err.decode(errors='replace')[-3000:]}")
    peaks = [peak_rss_of(report) for report in reports]
    shutil.rmtree(scratch, ignore_errors=True)
    if failures:
        raise SystemExit(f"{what} failed:\n" + "\n".join(failures))
    return Step(time.perf_counter() - started, max(peaks))


def runner(step: str, source: str, output: str, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llmbatch.runner.cli",
        step,
        "--input",
        source,
        "--output",
        output,
        *extra,
        *(["--model", str(model), "--served-model-name", SERVED] if step != "finalize" else []),
    ]


def check_output(store: ObjectStore, output: str, lines: int) -> str:
    """Every custom_id exactly once in output.jsonl + errors.jsonl."""
    layout = OutputLayout(output)
    seen: set[str] = set()
    count = 0
    for uri in (layout.output_file, layout.errors_file):
        for raw in store.read_lines(uri):
            if raw.strip():
                seen.add(json.loads(raw)["custom_id"])
                count += 1
    if count != lines or len(seen) != lines:
        raise SystemExit(f"{output}: {count} records, {len(seen)} distinct ids, {lines} lines")
    return "yes"


def measure(
    report: Report,
    work: Path,
    s3: SandboxS3,
    proxy: CountingProxy,
    proxy_url: str,
    model: Path,
    lines: int,
    shards: int,
) -> dict[str, float]:
    settings = StorageSettings(
        endpoint_url=s3.endpoint_url,
        region=s3.credentials.region,
        access_key_id=s3.credentials.access_key_id,
        secret_access_key=s3.credentials.secret_access_key,
    )
    base = f"s3://{s3.bucket}/scale-{lines}"
    source, output = f"{base}/input.jsonl", f"{base}/out"
    local = work / f"input-{lines}.jsonl"
    size = write_input(local, lines)
    store = get_store(source, settings)
    store.upload_file(local, source)  # straight to moto: the upload is not counted
    local.unlink()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": proxy_url,
        "AWS_REGION": s3.credentials.region,
        "AWS_ACCESS_KEY_ID": s3.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.credentials.secret_access_key,
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }
    proxy.get_bytes.clear()
    engine = json.dumps(TINY_ENGINE)
    plan = run_processes(
        [runner("plan", source, output, model, "--engine-args", engine)], env, "plan"
    )
    run_args = ["--engine-args", engine, "--shard-count", str(shards), "--metrics-port", "0"]
    run = run_processes(
        [
            runner("run", source, output, model, *run_args, "--shard-index", str(i))
            for i in range(shards)
        ],
        env,
        "run",
    )
    fin = run_processes([runner("finalize", source, output, model)], env, "finalize")
    input_key = "/" + source.removeprefix("s3://")
    read_ratio = proxy.get_bytes[input_key] / size
    all_gets = sum(proxy.get_bytes.values())
    exact = check_output(store, output, lines)
    report.add(
        f"{lines:,} lines ({size / 1e6:.0f} MB), {shards} shards: plan / run / finalize time",
        f"{plan.seconds:.0f} s / {run.seconds:.0f} s / {fin.seconds:.0f} s",
    )
    report.add(
        f"{lines:,} lines: peak RSS plan / largest shard / finalize",
        f"{plan.peak_rss_mb:.0f} / {run.peak_rss_mb:.0f} / {fin.peak_rss_mb:.0f} MB",
    )
    report.add(
        f"{lines:,} lines: bytes of the input read from S3 / input size",
        f"{read_ratio:.2f}x ({proxy.gets[input_key]} GETs; all GETs {all_gets / 1e6:.0f} MB)",
        "<= 2.1x",
    )
    report.add(f"{lines:,} lines: every custom_id once in output + errors", exact, "yes")
    return {"plan": plan.peak_rss_mb, "run": run.peak_rss_mb, "finalize": fin.peak_rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="line counts, comma-separated")
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from llmbatch_sandbox.models import ensure_model

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log, one per request
    model = ensure_model("tiny")
    load_before = machine_load()
    print(f"machine: {load_before}", flush=True)
    report = Report()
    peaks: list[dict[str, float]] = []
    work = Path(tempfile.mkdtemp(prefix="llmbatch-scale-"))
    s3 = SandboxS3(bucket="scale")
    s3.start()
    thread = ProxyThread(s3.endpoint_url, FaultConfig())
    proxy = thread.proxy = CountingProxy(s3.endpoint_url)
    try:
        url = thread.start()
        for lines in sizes:
            print(f"{lines:,} lines", flush=True)
            peaks.append(measure(report, work, s3, proxy, url, model, lines, args.shards))
    finally:
        thread.stop()
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    if len(peaks) > 1:
        growth = " / ".join(f"{peaks[-1][k] - peaks[0][k]:+.0f}" for k in peaks[0])
        report.add(
            f"peak RSS growth {sizes[-1]:,} vs {sizes[0]:,} lines: plan / shard / finalize",
            f"{growth} MB",
            "each <= +100 MB",
        )
    print()
    print(report.table())
    if args.write_results:
        write_results(report, args, load_before)


def write_results(report: Report, args: Any, load_before: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    replace_section(
        "scale-bench",
        "\n".join(
            [
                "## Scale (`benchmarks/bench_scale.py`)",
                "",
                f"Run {stamp}: sizes {args.sizes}, {args.shards} shards, tiny model, max_tokens "
                f"1; machine {load_before} at the start, {machine_load()} at the end.",
                "",
                report.table(),
                "",
                "- The plan, shard and finalize commands of the operator's pods, run as processes "
                "against the sandbox's S3 (moto) through a byte-counting proxy; shards at once.",
                "- Peak RSS is ru_maxrss of each process, taken by a small launcher process (a "
                "child of the benchmark process would report the benchmark's own size); the "
                "shards load the engine in-process.",
                "- Input bytes read: GET answer bodies for the input object (plan: the whole "
                "file; shards: their chunks' ranges, nearby ranges coalesced).",
            ]
        ),
    )


if __name__ == "__main__":
    from children import end_children_with_this_process

    end_children_with_this_process()
    main()
