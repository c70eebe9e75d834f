"""What the chaos tests share: BatchJobs on the sandbox with the real operator and runner, a
recorder of every phase each BatchJob shows and every Job created for it, and the ledger checks
(every input line exactly once in output.jsonl or errors.jsonl, counts and sha256 as in the
manifest), and the parts ledger (what the chunk parts and the plan's error parts hold, against
what the shards say they answered)."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmbatch.api.documents import ShardProgress
from llmbatch.api.layout import OutputLayout, part_number
from llmbatch.api.phases import Phase
from llmbatch.controller.transitions import ALLOWED
from llmbatch.runner.parts import iter_part_records
from llmbatch.storage import ObjectStore
from tests.e2e.cluster import jsonl, requests_jsonl
from tests.fixtures.sandbox import SandboxInfo

NAMESPACE = "chaos"
SECRET = "llmbatch-s3"
TERMINAL = {"Succeeded", "Failed", "Expired", "Cancelled"}


def reachable() -> dict[str, set[str]]:
    """Phase -> every phase reachable from it by allowed moves (a watch may skip some)."""
    closure: dict[str, set[str]] = {}
    for start in ALLOWED:
        seen: set[Phase] = set()
        todo = [start]
        while todo:
            for nxt in ALLOWED[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        closure[start.value] = {p.value for p in seen}
    return closure


def backwards_moves(history: list[str]) -> list[tuple[str, str]]:
    """Moves in a phase history that the lifecycle does not allow, even transitively."""
    closure = reachable()
    bad = []
    phases = [p if p else "Validating" for p in history]
    for before, after in itertools.pairwise(phases):
        if before != after and after not in closure[before]:
            bad.append((before, after))
    return bad


@dataclass
class Recorder:
    """Watches BatchJobs and Jobs of the namespace in a thread; survives dropped watches, 410s
    and API faults by listing again."""

    sandbox: SandboxInfo
    namespace: str = NAMESPACE
    phases: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))
    job_uids: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for target in (self._watch_batchjobs, self._watch_jobs):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)

    def _seen_batchjob(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase") or ""
        with self._lock:
            history = self.phases[name]
            if not history or history[-1] != phase:
                history.append(phase)

    def _seen_job(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        with self._lock:
            self.job_uids[meta["name"]].add(meta["uid"])

    def _loop(self, list_call: Callable[..., Any], seen: Callable[[dict[str, Any]], None]) -> None:
        from kubernetes import config, watch

        client = config.new_client_from_config(config_file=str(self.sandbox.kubeconfig))
        while not self._stop.is_set():
            try:
                listed = list_call(client, None)
                for item in listed["items"]:
                    seen(item)
                version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    lambda **kw: list_call(client, kw),
                    resource_version=version,
                    timeout_seconds=5,
                )
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        seen(event["raw_object"])
                    if self._stop.is_set():
                        break
            except Exception:
                self.errors += 1
                time.sleep(0.2)
        client.close()

    def _watch_batchjobs(self) -> None:
        from kubernetes import client as k8s

        def call(api_client: Any, kw: dict[str, Any] | None) -> Any:
            api = k8s.CustomObjectsApi(api_client)
            args = ("llmbatch.io", "v1alpha1", self.namespace, "batchjobs")
            if kw is None:
                return api.list_namespaced_custom_object(*args)
            return api.list_namespaced_custom_object(*args, **kw)

        self._loop(call, self._seen_batchjob)

    def _watch_jobs(self) -> None:
        from kubernetes import client as k8s

        def call(api_client: Any, kw: dict[str, Any] | None) -> Any:
            api = k8s.BatchV1Api(api_client)
            if kw is None:
                listed = api.list_namespaced_job(self.namespace)
                return api_client.sanitize_for_serialization(listed)
            return api.list_namespaced_job(self.namespace, **kw)

        self._loop(call, self._seen_job)

    def history(self, name: str) -> list[str]:
        with self._lock:
            return list(self.phases.get(name, []))


@dataclass
class Batch:
    body: dict[str, Any]
    requests: int
    custom_ids: list[str]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def output(self) -> str:
        return str(self.body["spec"]["output"]).rstrip("/")


def make_batch(
    sandbox: SandboxInfo,
    store: ObjectStore,
    model_dir: Path,
    prefix: str,
    requests: int,
    max_tokens: int = 8,
    **spec: Any,
) -> Batch:
    """A BatchJob over ``requests`` chat lines on the tiny model (a local path: sandbox pods
    are processes of this machine), its input uploaded."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    base = f"s3://{sandbox.bucket}/chaos/{name}"
    body: dict[str, Any] = {
        "apiVersion": "llmbatch.io/v1alpha1",
        "kind": "BatchJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {
                "name": "tiny-qwen",
                "source": str(model_dir),
                "engineArgs": {"max_model_len": 256},
            },
            "input": f"{base}/input.jsonl",
            "output": f"{base}/out/",
            "parallelism": 1,
            "storage": {"secretRef": {"name": SECRET}},
            **spec,
        },
    }
    data = requests_jsonl(requests, "tiny-qwen", prefix=name, max_tokens=max_tokens)
    store.write_bytes(body["spec"]["input"], data)
    return Batch(body, requests, [f"{name}-{i}" for i in range(requests)])


@dataclass
class Ledger:
    output: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    manifest: dict[str, Any]

    def error_codes(self) -> collections.Counter[str]:
        return collections.Counter(line["error"]["code"] for line in self.errors)


def check_ledger(store: ObjectStore, batch: Batch, status: dict[str, Any]) -> Ledger:
    """Every input line exactly once in output.jsonl or errors.jsonl; status, manifest and the
    files agree; the manifest's sha256 are those of the files."""
    files = {
        kind: store.read_bytes(f"{batch.output}/{kind}.jsonl") for kind in ("output", "errors")
    }
    manifest = json.loads(store.read_bytes(f"{batch.output}/manifest.json"))
    out, errors = list(jsonl(files["output"])), list(jsonl(files["errors"]))
    ids = collections.Counter(line["custom_id"] for line in out + errors)
    missing = set(batch.custom_ids) - set(ids)
    duplicated = {k: v for k, v in ids.items() if v > 1}
    assert not missing, f"{batch.name}: {len(missing)} line(s) lost, e.g. {sorted(missing)[:3]}"
    assert not duplicated, f"{batch.name}: duplicated {sorted(duplicated)[:3]}"
    assert set(ids) == set(batch.custom_ids)
    counts = {"total": batch.requests, "completed": len(out), "failed": len(errors)}
    assert manifest["requestCounts"] == counts, (manifest["requestCounts"], counts)
    assert status.get("requestCounts") == counts, (status.get("requestCounts"), counts)
    sha = manifest["sha256"]
    assert sha["output"] == hashlib.sha256(files["output"]).hexdigest(), "output.jsonl corrupted"
    assert sha["errors"] == hashlib.sha256(files["errors"]).hexdigest(), "errors.jsonl corrupted"
    assert sha["input"] == hashlib.sha256(store.read_bytes(batch.body["spec"]["input"])).hexdigest()
    if status.get("phase") == "Succeeded":
        # Nothing expired or was cancelled: every request was answered in some part.
        lost = read_parts(store, batch.output).lost(batch.requests)
        assert lost == 0, f"{batch.name}: {lost} line(s) in no part"
    return Ledger(out, errors, manifest)


@dataclass(frozen=True)
class PartsLedger:
    """A batch's committed parts, read with the runner's own record decoding: how many chunk
    parts answer each input line, and the lines the plan step answered itself (its error
    parts). The parts are what a restarted shard resumes from and what finalize merges."""

    answers: collections.Counter[int]
    plan_errors: frozenset[int]

    @property
    def committed(self) -> int:
        """Distinct input lines answered in chunk parts."""
        return len(self.answers)

    @property
    def recomputed(self) -> int:
        """Lines answered in more than one part of their chunk (two writers, or one writer
        twice): the work was done again and finalize keeps only the first answer."""
        return sum(1 for count in self.answers.values() if count > 1)

    def lost(self, total: int) -> int:
        """Of ``total`` requests, those answered by no part at all."""
        return total - len(self.plan_errors | self.answers.keys())


def _part_lines(store: ObjectStore, uri: str) -> Iterator[int]:
    return (record.lineno for record in iter_part_records(store, uri))


def read_parts(store: ObjectStore, output: str) -> PartsLedger:
    layout = OutputLayout(output)
    answers: collections.Counter[int] = collections.Counter()
    for info in store.list(layout.parts_dir):
        if part_number(info.uri) is not None:  # parts/chunk-<n>/part-<s>-<writer>.jsonl
            answers.update(_part_lines(store, info.uri))
    plan_errors = frozenset(
        lineno
        for info in store.list(layout.plan_errors_dir)
        for lineno in _part_lines(store, info.uri)
    )
    return PartsLedger(answers, plan_errors)


def shard_answers(store: ObjectStore, output: str) -> int:
    """Requests the shards say they answered: the sum of their last published progress. Each
    attempt of a shard goes on from its predecessor's counters, so a line answered by an
    attempt that died before committing it, then answered again, counts twice."""
    layout = OutputLayout(output)
    total = 0
    for info in store.list(layout.progress_dir):
        progress = ShardProgress.model_validate_json(store.read_bytes(info.uri))
        total += progress.completed + progress.failed
    return total


def uncommitted_answers(store: ObjectStore, output: str) -> int:
    """Answers counted by the shards but in no chunk part: work a killed attempt did and lost,
    to be done again. A lower bound: progress is published every few tenths of a second."""
    return max(0, shard_answers(store, output) - read_parts(store, output).committed)
