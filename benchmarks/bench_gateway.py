"""Gateway benchmark: streamed upload memory and throughput, and GET latency under load.

    .venv/bin/python benchmarks/bench_gateway.py [--size-mb 200] [--clients 50] [--seconds 20]

Starts a sandbox (API server emulator + moto S3) and one gateway, each as its own process, then
1. uploads a generated batch file of --size-mb megabytes (valid requests, validated line by
   line on the way) through POST /v1/files, and the same file straight to the same S3 with
   boto3's upload_file; reports both throughputs, their ratio and the gateway's peak RSS
   (VmHWM: the high-water mark over the gateway's whole life, startup included);
2. runs --clients concurrent clients calling GET /v1/batches/{id} for --seconds and reports
   requests/s and latency percentiles.
Prints a Markdown table (the one recorded in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.sandbox import SandboxInfo, start_sandbox, stop_sandbox  # noqa: E402
from tests.gateway.procs import GatewayProcess, create_key, gateway_config  # noqa: E402

MODEL = "bench-model"
MB = 1_000_000


def make_batch_file(path: Path, size_bytes: int, max_lines: int = 50_000) -> int:
    """Valid chat requests, sized so the file has about ``size_bytes`` in ``max_lines``."""
    per_line = size_bytes // max_lines
    template = {
        "custom_id": "",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": ""}]},
    }
    overhead = len(json.dumps(template)) + 12
    words = (
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
        "incididunt ut labore et dolore magna aliqua "
    )
    written = 0
    with path.open("wb") as out:
        for i in range(max_lines):
            text = (words * (per_line // len(words) + 1))[: max(1, per_line - overhead)]
            template["custom_id"] = f"r{i:07d}"
            template["body"]["messages"][0]["content"] = text  # type: ignore[index]
            line = json.dumps(template).encode() + b"\n"
            out.write(line)
            written += len(line)
    return written


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def upload_via_gateway(url: str, key: str, path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    with path.open("rb") as handle, httpx.Client(timeout=600) as client:
        answer = client.post(
            url + "/v1/files",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": (path.name, handle)},
            data={"purpose": "batch"},
        )
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed, str(answer.json()["id"])


def upload_direct(sandbox: SandboxInfo, path: Path) -> float:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=sandbox.s3_endpoint,
        region_name=sandbox.region,
        aws_access_key_id=sandbox.access_key_id,
        aws_secret_access_key=sandbox.secret_access_key,
    )
    started = time.perf_counter()
    client.upload_file(str(path), sandbox.bucket, "bench/direct.jsonl")
    return time.perf_counter() - started


async def _get_loop(
    host: str, port: int, request: bytes, stop_at: float, latencies: list[float]
) -> int:
    """One client: a keep-alive connection sending GETs back to back. A bare HTTP/1.1 client
    (status line, headers, Content-Length body): httpx would spend more CPU per request than
    the gateway, and on two cores the load generator must not be what is measured."""
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
    finally:
        writer.close()
    return errors


async def hammer(
    url: str, key: str, batch_id: str, clients: int, seconds: float
) -> tuple[list[float], int]:
    parsed = httpx.URL(url)
    request = (
        f"GET /v1/batches/{batch_id} HTTP/1.1\r\nHost: {parsed.host}\r\n"
        f"Authorization: Bearer {key}\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    errors = await asyncio.gather(
        *(
            _get_loop(parsed.host, int(parsed.port or 80), request, stop_at, latencies)
            for _ in range(clients)
        )
    )
    return latencies, sum(errors)


def _buckets(metrics: str) -> dict[float, float]:
    """Cumulative counts of the GET-batch latency histogram, by upper bound (seconds)."""
    found: dict[float, float] = {}
    for line in metrics.splitlines():
        if (
            line.startswith("llmbatch_gateway_request_duration_seconds_bucket{")
            and 'route="/v1/batches/{batch_id}"' in line
            and 'method="GET"' in line
        ):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            found[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return found


def server_side_p99(before: str, after: str) -> float:
    """Upper bound of the bucket holding the 99th percentile of the gateway's own time per
    request (from its /metrics histogram, this run only)."""
    start, end = _buckets(before), _buckets(after)
    counts = {bound: end[bound] - start.get(bound, 0.0) for bound in end}
    total = counts.get(float("inf"), 0.0)
    for bound in sorted(counts):
        if counts[bound] >= 0.99 * total:
            return bound
    return float("inf")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        workdir = Path(tmp)
        sandbox = start_sandbox(workdir / "sandbox")
        assert sandbox.process is not None
        try:
            config = gateway_config(
                sandbox,
                {MODEL: {"source": "/models/bench", "resources": {"gpu": 0}}},
                tiers={"bench": 100_000_000},
            )
            gateway = GatewayProcess(sandbox, config, workdir)
            try:
                key = create_key(sandbox, "bench", "bench")
                data = workdir / "batch.jsonl"
                size = make_batch_file(data, args.size_mb * MB)
                results: dict[str, Any] = {"size_mb": size / MB}
                rss_before = peak_rss_mb(gateway.popen.pid)
                gateway_seconds, file_id = upload_via_gateway(gateway.url, key, data)
                results["rss_before"] = rss_before
                results["rss_peak"] = peak_rss_mb(gateway.popen.pid)
                direct_seconds = upload_direct(sandbox, data)
                results["gateway_mbps"] = size / MB / gateway_seconds
                results["direct_mbps"] = size / MB / direct_seconds
                data.unlink()

                batch = httpx.post(
                    gateway.url + "/v1/batches",
                    headers={"Authorization": f"Bearer {key}"},
                    json={
                        "input_file_id": file_id,
                        "endpoint": "/v1/chat/completions",
                        "completion_window": "24h",
                    },
                    timeout=60,
                )
                batch.raise_for_status()
                metrics_before = httpx.get(gateway.url + "/metrics").text
                latencies, errors = asyncio.run(
                    hammer(gateway.url, key, batch.json()["id"], args.clients, args.seconds)
                )
                server_p99 = server_side_p99(
                    metrics_before, httpx.get(gateway.url + "/metrics").text
                )
            finally:
                gateway.stop()
        finally:
            stop_sandbox(sandbox.process)

    ratio = results["gateway_mbps"] / results["direct_mbps"]
    rows = [
        ("Upload size", f"{results['size_mb']:.0f} MB ({50_000} requests)", ""),
        (
            "Gateway peak RSS (VmHWM)",
            f"{results['rss_peak']:.0f} MB",
            f"< 150 MB ({'met' if results['rss_peak'] < 150 else 'MISSED'}); "
            f"{results['rss_before']:.0f} MB before the upload",
        ),
        ("Upload through the gateway", f"{results['gateway_mbps']:.1f} MB/s", ""),
        ("Direct boto3 upload_file", f"{results['direct_mbps']:.1f} MB/s", ""),
        ("Gateway / direct", f"{ratio:.2f}x", f">= 0.7x ({'met' if ratio >= 0.7 else 'MISSED'})"),
        (
            f"GET /v1/batches/{{id}}, {args.clients} clients, {args.seconds:.0f} s",
            f"{len(latencies) / args.seconds:.0f} req/s",
            f"{errors} errors",
        ),
        ("  p50 latency", f"{statistics.median(latencies) * 1000:.1f} ms", ""),
        (
            "  p99 latency",
            f"{percentile(latencies, 0.99) * 1000:.1f} ms",
            f"< 100 ms ({'met' if percentile(latencies, 0.99) < 0.1 else 'MISSED'})",
        ),
        (
            "  p99 of the gateway's own time (its /metrics)",
            f"<= {server_p99 * 1000:.0f} ms",
            "histogram bucket bound; the rest is queueing (event loop, CPU)",
        ),
    ]
    print("| Measure | Result | Target / note |")
    print("|---|---|---|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")


if __name__ == "__main__":
    from children import end_children_with_this_process

    end_children_with_this_process()
    main()
