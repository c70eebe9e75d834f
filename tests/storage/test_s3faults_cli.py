"""The fault proxy as a command (how the chaos suite runs it) and its counters endpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from llmbatch.storage.s3 import S3Store
from llmbatch_sandbox.s3faults import STATS_PATH, FaultConfig, FaultRates
from tests.fixtures.s3 import S3Server


def test_proxy_command_counts_and_reports(s3_server: S3Server, s3_bucket: str) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmbatch_sandbox.s3faults",
            "--upstream",
            s3_server.endpoint_url,
            "--rate",
            "0.3",
            "--seed",
            "3",
            "--kinds",
            "slow_down,reset_before",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("S3_FAULT_PROXY=http://127.0.0.1:")
        url = first.split("=", 1)[1]
        via = S3Server(url, s3_server.access_key_id, s3_server.secret_access_key, "us-east-1")
        store = S3Store(via.settings(backoff_base=0.01, backoff_cap=0.1))
        for i in range(6):
            store.write_bytes(f"s3://{s3_bucket}/k{i}", b"v%d" % i)
            assert store.read_bytes(f"s3://{s3_bucket}/k{i}") == b"v%d" % i
        with urllib.request.urlopen(url + STATS_PATH, timeout=10) as response:
            live = json.load(response)
        assert live["requests"] >= 12
        assert live["slow_down"] + live["reset_before"] > 0
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
        final = json.loads(out.strip().splitlines()[-1])
        assert final["requests"] >= live["requests"]
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_config_validation() -> None:
    assert FaultRates.spread(0.3, ("slow", "error_500")).total == 0.3
    with pytest.raises(ValueError, match="GET"):
        FaultConfig(rates={"GET": FaultRates(error_500=0.7, slow=0.5)})
    with pytest.raises(ValueError, match="unknown"):
        FaultRates.spread(0.1, ("meteor",))
