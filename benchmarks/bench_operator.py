"""Operator benchmark: many BatchJobs with ``suspend: true`` applied at once on the sandbox.

Measures, for N BatchJobs created in one ``kubectl create`` (500 by default):
- seconds from the create until every run Job exists and every status says Suspended;
- the operator's peak RSS (VmHWM of the ``llmbatch operator`` process);
- status patches per BatchJob (the operator's ``llmbatch_status_patches_total`` / N).
Targets on the 2-core machine: < 60 s, < 200 MB, <= 3 patches per BatchJob.

    python benchmarks/bench_operator.py                    # 500 BatchJobs
    python benchmarks/bench_operator.py --count 50         # a quick check
    python benchmarks/bench_operator.py --write-results    # also update benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.cluster import Kubectl, OperatorProcess, kubectl_path  # noqa: E402
from tests.fixtures.sandbox import SandboxInfo, start_sandbox, stop_sandbox  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- operator-bench:begin -->", "<!-- operator-bench:end -->"
NAMESPACE = "bench-operator"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def batchjob(index: int, bucket: str) -> dict[str, Any]:
    return {
        "apiVersion": "llmbatch.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {"name": f"bench-{index:04d}", "namespace": NAMESPACE},
        "spec": {
            "model": {"name": "tiny-qwen", "source": f"s3://{bucket}/models/tiny-qwen/"},
            "input": f"s3://{bucket}/bench/input.jsonl",
            "output": f"s3://{bucket}/bench/out-{index:04d}/",
            "parallelism": 2,
            "suspend": True,
            "storage": {"secretRef": {"name": "llmbatch-s3"}},
        },
    }


def prepare(sandbox: SandboxInfo, kubectl: Kubectl) -> None:
    kubectl.prepare_namespace("llmbatch-s3")
    line = {
        "custom_id": "r-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}]},
    }
    uri = f"s3://{sandbox.bucket}/bench/input.jsonl"
    sandbox.store().write_bytes(uri, (json.dumps(line) + "\n").encode())


class WriteCounter:
    """Counts the writes each BatchJob sees (MODIFIED watch events: kopf's finalizer patch,
    the operator's status patches) through ``kubectl get -w``."""

    def __init__(self, kubectl: Kubectl) -> None:
        self.modified: dict[str, int] = {}
        env = dict(os.environ, KUBECONFIG=str(kubectl.sandbox.kubeconfig))
        self._process = subprocess.Popen(
            [
                kubectl_path(),
                "-n",
                NAMESPACE,
                "get",
                "batchjobs",
                "-w",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for chunk in iter(lambda: self._process.stdout.readline(), ""):  # type: ignore[union-attr]
            buffer += chunk
            while True:
                stripped = buffer.lstrip()
                try:
                    event, end = decoder.raw_decode(stripped)
                except ValueError:
                    break
                buffer = stripped[end:]
                if event.get("type") == "MODIFIED":
                    name = event["object"]["metadata"]["name"]
                    self.modified[name] = self.modified.get(name, 0) + 1

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)


def count_state(kubectl: Kubectl) -> tuple[int, int]:
    """(Suspended BatchJobs, run Jobs) in the namespace."""
    batchjobs = kubectl.items("batchjobs")
    suspended = sum(1 for b in batchjobs if (b.get("status") or {}).get("phase") == "Suspended")
    jobs = kubectl.items("jobs", "llmbatch.io/role=run")
    return suspended, len(jobs)


def run(count: int, timeout: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    sandbox = start_sandbox(workdir / "sandbox")
    operator: OperatorProcess | None = None
    try:
        kubectl = Kubectl(sandbox, NAMESPACE)
        prepare(sandbox, kubectl)
        # The operator's default polling and write intervals, not the e2e tests' faster ones.
        operator = OperatorProcess(
            sandbox,
            NAMESPACE,
            workdir / "operator.log",
            extra_env={"LLMBATCH_ACTIVE_INTERVAL": "2.5", "LLMBATCH_PROGRESS_INTERVAL": "5"},
        )
        operator.start()
        manifest = workdir / "batchjobs.json"
        items = [batchjob(i, sandbox.bucket) for i in range(count)]
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        writes = WriteCounter(kubectl)
        time.sleep(1.0)  # the watch is established
        started = time.monotonic()
        created = kubectl.run("create", "-f", str(manifest), check=False)
        create_seconds = time.monotonic() - started
        if created.returncode != 0:
            raise SystemExit(f"kubectl create failed: {created.stderr[-2000:]}")
        suspended = jobs = 0
        while time.monotonic() - started < timeout:
            suspended, jobs = count_state(kubectl)
            if suspended == count and jobs == count:
                break
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        assert operator.process is not None
        rss = peak_rss_mb(operator.process.pid)
        metrics = operator.metrics()
        match = re.search(r"^llmbatch_status_patches_total ([0-9.e+]+)$", metrics, re.MULTILINE)
        patches = float(match.group(1)) if match else float("nan")
        time.sleep(2.0)  # the last watch events arrive
        writes.stop()
        per_object = [writes.modified.get(item["metadata"]["name"], 0) for item in items]
        return {
            "writes_mean": round(sum(per_object) / count, 2),
            "writes_max": max(per_object),
            "count": count,
            "create_seconds": round(create_seconds, 1),
            "seconds": round(elapsed, 1),
            "suspended": suspended,
            "jobs": jobs,
            "rss_mb": round(rss, 1),
            "patches_per_batchjob": round(patches / count, 2),
            "completed": suspended == count and jobs == count,
        }
    finally:
        if operator is not None:
            operator.stop()
        assert sandbox.process is not None
        stop_sandbox(sandbox.process)


def table(result: dict[str, Any]) -> str:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = [
        ("BatchJobs created (one kubectl create)", f"{result['count']}", ""),
        ("kubectl create itself", f"{result['create_seconds']} s", ""),
        (
            "until every Job exists and every status is Suspended",
            f"{result['seconds']} s",
            f"< 60 s: {verdict(result['completed'] and result['seconds'] < 60)}",
        ),
        (
            "operator peak RSS",
            f"{result['rss_mb']} MB",
            f"< 200 MB: {verdict(result['rss_mb'] < 200)}",
        ),
        (
            "status patches per BatchJob (operator counter)",
            f"{result['patches_per_batchjob']}",
            f"<= 3: {verdict(result['patches_per_batchjob'] <= 3)}",
        ),
        (
            "all writes per BatchJob (watch MODIFIED events: kopf finalizer + status), mean / max",
            f"{result['writes_mean']} / {result['writes_max']}",
            "",
        ),
    ]
    lines = ["| measure | value | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def _wrap(paragraph: str) -> str:
    return textwrap.fill(paragraph, 99, break_on_hyphens=False, break_long_words=False)


def write_results(text: str, count: int, load: tuple[float, float, float]) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d at %H:%M UTC")
    intro = (
        f"`.venv/bin/python benchmarks/bench_operator.py --count {count}` starts a sandbox (API "
        "server emulator, Job controller, moto S3) and one `llmbatch operator` process, then "
        f"creates {count} BatchJobs with `suspend: true` (parallelism 2 each) in one "
        "`kubectl create` and polls (from the start of the create) until every run Job exists "
        "and every status says "
        "Suspended. Peak RSS is the operator process's VmHWM; status patches come from the "
        "operator's `llmbatch_status_patches_total`, all writes from a watch on the "
        f"BatchJobs. Run on {stamp} on the shared 2-core machine (load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start):"
    )
    outro = (
        "Each BatchJob costs one status write (validation passes, the Job's name and phase "
        "Suspended are written together, then the Job is created suspended) plus kopf's "
        "finalizer patch, which its per-BatchJob daemon needs; a suspended BatchJob is then "
        "looked at every 30 s (one GET of its Job) or at once when its spec or Job changes."
    )
    section = (
        f"{BEGIN}\n## Operator (`benchmarks/bench_operator.py`)\n\n"
        f"{_wrap(intro)}\n\n{text}\n\n{_wrap(outro)}\n{END}"
    )
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        current = head + section + tail
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    result = run(args.count, args.timeout)
    text = table(result)
    print(text)
    if args.write_results:
        write_results(text, args.count, load)


if __name__ == "__main__":
    from children import end_children_with_this_process

    end_children_with_this_process()
    main()
