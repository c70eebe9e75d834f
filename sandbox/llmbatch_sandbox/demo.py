"""``make demo``: a complete batch end to end on the sandbox, with real vLLM on the CPU.

It starts ``llmbatch sandbox --operator``, uploads the generated tiny model and
examples/requests.jsonl to the sandbox's S3, applies examples/batchjob.yaml with the real
``kubectl``, shows ``kubectl get batchjobs`` until the batch is finished, then prints the first
result lines and the manifest. Exit status 0 means the BatchJob reached Succeeded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from llmbatch.storage import StorageSettings, get_store, join_uri
from llmbatch_sandbox.models import ensure_model

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "batchjob.yaml"
REQUESTS = REPO / "examples" / "requests.jsonl"
MODEL_URI = "s3://llmbatch/models/tiny-qwen/"
INPUT_URI = "s3://llmbatch/examples/requests.jsonl"
OUTPUT_URI = "s3://llmbatch/examples/out/"
TERMINAL = {"Succeeded", "Failed", "Expired", "Cancelled"}
TIMEOUT_S = 900.0


def _bin(name: str) -> str:
    """Prefer the virtualenv's own executables (kubectl comes from a wheel)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"demo: {name} not found; run `make install` first")
    return found


def _read_banner(stream: IO[str], deadline: float) -> dict[str, str]:
    """Read the sandbox's KUBECONFIG=... and S3_ENDPOINT=... lines."""
    found: dict[str, str] = {}
    while len(found) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("demo: the sandbox did not report ready in time")
        line = stream.readline()
        if not line:
            raise SystemExit("demo: the sandbox exited before it was ready")
        print(f"  sandbox | {line.rstrip()}")
        key, sep, value = line.strip().partition("=")
        if sep and key in ("KUBECONFIG", "S3_ENDPOINT"):
            found[key] = value
    return found


def _kubectl(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [_bin("kubectl"), *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"demo: kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _secret_value(env: dict[str, str], key: str) -> str:
    encoded = _kubectl(env, "get", "secret", "llmbatch-s3", "-o", f"jsonpath={{.data.{key}}}")
    return base64.b64decode(encoded).decode()


def _upload(settings: StorageSettings, model_dir: Path) -> None:
    store = get_store(MODEL_URI, settings)
    for path in sorted(model_dir.rglob("*")):
        if path.is_file():
            store.upload_file(path, join_uri(MODEL_URI, str(path.relative_to(model_dir))))
    store.upload_file(REQUESTS, INPUT_URI)


def _wait(env: dict[str, str]) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    last_state = ""
    while time.monotonic() < deadline:
        table = _kubectl(env, "get", "batchjobs")
        # Print the table when phase or progress move, not every time AGE ticks.
        state = " ".join(line.rsplit(None, 1)[0] for line in table.splitlines()[1:])
        if state != last_state:
            print(table.rstrip())
            last_state = state
        phase = _kubectl(env, "get", "batchjob", "tiny-chat", "-o", "jsonpath={.status.phase}")
        if phase in TERMINAL:
            return phase
        time.sleep(2)
    raise SystemExit("demo: the BatchJob did not finish within 15 minutes")


def _show_results(settings: StorageSettings) -> None:
    store = get_store(OUTPUT_URI, settings)
    print("\nFirst lines of output.jsonl:")
    for i, raw in enumerate(store.read_lines(join_uri(OUTPUT_URI, "output.jsonl"))):
        if i == 3:
            break
        line = json.loads(raw)
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        print(f"  {line['custom_id']}: {content!r}")
    errors = sum(1 for _ in store.read_lines(join_uri(OUTPUT_URI, "errors.jsonl")))
    manifest = json.loads(store.read_bytes(join_uri(OUTPUT_URI, "manifest.json")))
    print(f"errors.jsonl: {errors} lines")
    print("manifest.json:", json.dumps({k: manifest[k] for k in ("requestCounts", "usage")}))


def main() -> int:
    print("demo: generating the tiny test model (cached after the first run)")
    model_dir = ensure_model("tiny")
    workdir = REPO / ".sandbox"
    workdir.mkdir(exist_ok=True)
    kubeconfig = workdir / "demo-kubeconfig"
    print("demo: starting `llmbatch sandbox --operator`")
    sandbox = subprocess.Popen(
        [_bin("llmbatch"), "sandbox", "--operator", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        assert sandbox.stdout is not None
        banner = _read_banner(sandbox.stdout, time.monotonic() + 60)
        env = {**os.environ, "KUBECONFIG": banner["KUBECONFIG"]}
        # Upload with the same credentials the pods get: the sandbox's llmbatch-s3 Secret.
        settings = StorageSettings(
            endpoint_url=banner["S3_ENDPOINT"],
            region="us-east-1",
            access_key_id=_secret_value(env, "AWS_ACCESS_KEY_ID"),
            secret_access_key=_secret_value(env, "AWS_SECRET_ACCESS_KEY"),
        )
        print(f"demo: uploading the model to {MODEL_URI} and the requests to {INPUT_URI}")
        _upload(settings, model_dir)
        print(f"demo: kubectl apply -f {EXAMPLE.relative_to(REPO)}")
        print(_kubectl(env, "apply", "-f", str(EXAMPLE)).rstrip())
        phase = _wait(env)
        print("\n$ kubectl get batchjobs -o wide")
        print(_kubectl(env, "get", "batchjobs", "-o", "wide").rstrip())
        if phase != "Succeeded":
            print(_kubectl(env, "describe", "batchjob", "tiny-chat"))
            return 1
        _show_results(settings)
        return 0
    finally:
        sandbox.send_signal(signal.SIGINT)
        try:
            sandbox.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sandbox.kill()


if __name__ == "__main__":
    sys.exit(main())
