"""``python -m llmbatch_sandbox.apiserver`` serves, writes a kubeconfig and stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sandbox_only, pytest.mark.slow]


def test_standalone_server(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmbatch_sandbox.apiserver",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("URL=")
        assert proc.stdout.readline().strip() == f"KUBECONFIG={kubeconfig}"
        assert url in kubeconfig.read_text()
        with urllib.request.urlopen(f"{url}/version", timeout=5) as resp:
            assert json.load(resp)["major"] == "1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
