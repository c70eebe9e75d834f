"""Prefix-grouping benchmark: ``llmbatch run`` against vLLM's ``run_batch`` on a shuffled
file where several requests share each long document.

    python benchmarks/bench_prefix.py                          # 60 docs x 6 questions (long)
    python benchmarks/bench_prefix.py --docs 4 --questions 3 --words 150 --repeats 1  # short
    python benchmarks/bench_prefix.py --write-results          # also update RESULTS.md

The file: ``--docs`` documents of about ``--words`` words, ``--questions`` questions about each,
one request per question (the document first, the question last: they share the document as
a prompt prefix), shuffled, max_tokens 8, greedy. The KV cache (VLLM_CPU_KVCACHE_SPACE=1 GiB)
cannot hold every document at once, so in file order most documents are evicted before their
next question comes. ``llmbatch run`` (plan, run, finalize; the plan puts a document's
questions next to each other) and ``python -m vllm.entrypoints.openai.run_batch`` read the
same local file with the same engine arguments; whole processes, start-up included, rounds
alternating which goes first; then the greedy answers are compared per custom_id.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runner import Report, contents, engine_flags, machine_load
from results_section import replace_section

MODEL = "smollm2-135m-instruct"
# The same for both contenders; prefix caching is vLLM's default, spelled out here.
ENGINE_ARGS: dict[str, Any] = {
    "enforce_eager": True,
    "dtype": "float32",
    "max_model_len": 2048,
    "max_num_seqs": 64,
    "max_num_batched_tokens": 8192,
    "enable_prefix_caching": True,
    "seed": 0,
}
_VOCABULARY = [
    "the",
    "river",
    "city",
    "market",
    "winter",
    "harbor",
    "council",
    "bridge",
    "school",
    "garden",
    "farmer",
    "report",
    "season",
    "railway",
    "station",
    "letter",
    "museum",
    "storm",
    "village",
    "island",
    "mountain",
    "forest",
    "engineer",
    "doctor",
    "teacher",
    "merchant",
    "library",
    "festival",
    "harvest",
    "canal",
    "tower",
    "castle",
    "north",
    "south",
    "east",
    "west",
    "morning",
    "evening",
    "summer",
    "spring",
    "autumn",
    "copper",
    "silver",
    "wheat",
    "barley",
    "wool",
    "timber",
    "salt",
    "coal",
    "ship",
    "road",
    "mill",
    "bakery",
    "fountain",
    "square",
    "church",
    "court",
    "hall",
    "theatre",
    "newspaper",
    "telegraph",
    "lantern",
    "orchard",
    "meadow",
    "valley",
    "lake",
    "shore",
    "cliff",
    "lighthouse",
    "quarry",
    "factory",
    "workshop",
    "printer",
    "tailor",
    "weaver",
    "potter",
    "carpenter",
    "painter",
    "singer",
    "sailor",
    "soldier",
    "mayor",
    "judge",
    "clerk",
]
_QUESTIONS = (
    "What is the title of the document?",
    "Which town is the document about?",
    "Name one trade mentioned in the document.",
    "In one word, what season is described?",
    "What does the document say about the river?",
    "Who is mentioned first in the document?",
    "Summarize the document in five words.",
    "Which building is mentioned last?",
)


def model_path() -> tuple[Path, str]:
    """SmolLM2 from ``llmbatch models fetch`` (its path is the last line printed)."""
    fetched = subprocess.run(
        [sys.executable, "-m", "llmbatch.cli.main", "models", "fetch", MODEL],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(fetched.stdout.strip().splitlines()[-1]), MODEL


def document(rng: random.Random, index: int, words: int) -> str:
    sentences = [f"Document {index}: the {rng.choice(_VOCABULARY)} of town {index}."]
    count = 0
    while count < words:
        length = rng.randint(8, 16)
        body = " ".join(rng.choice(_VOCABULARY) for _ in range(length))
        sentences.append(body.capitalize() + ".")
        count += length
    return " ".join(sentences)


def make_file(path: Path, served: str, docs: int, questions: int, words: int) -> int:
    """The shuffled batch file; returns its number of requests."""
    rng = random.Random(13)
    lines = []
    for d in range(docs):
        text = document(rng, d, words)
        for q, question in enumerate(_QUESTIONS[:questions]):
            body = {
                "model": served,
                "messages": [
                    {"role": "system", "content": "Answer briefly from the document."},
                    {"role": "user", "content": f"{text}\n\nQuestion: {question}"},
                ],
                "max_tokens": 8,
                "temperature": 0,
            }
            row = {"custom_id": f"doc{d}-q{q}", "method": "POST", "url": "/v1/chat/completions"}
            lines.append(json.dumps({**row, "body": body}))
    rng.shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def _timed(command: list[str], what: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace")[-4000:]
        raise SystemExit(f"{what} failed with exit {proc.returncode}:\n{tail}")
    return time.perf_counter() - started


def ours(source: Path, output: Path, model: Path, served: str) -> float:
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "llmbatch.cli.main", "run", str(source)]
    command += ["--output", str(output), "--model", str(model), "--served-model-name", served]
    command += ["--engine-args", json.dumps(ENGINE_ARGS)]
    return _timed(command, "llmbatch run")


def theirs(source: Path, output: Path, model: Path, served: str) -> float:
    command = [sys.executable, "-m", "vllm.entrypoints.openai.run_batch"]
    command += ["-i", str(source), "-o", str(output), "--model", str(model)]
    command += ["--served-model-name", served, *engine_flags(ENGINE_ARGS)]
    return _timed(command, "vllm run_batch")


def compare(report: Report, work: Path, args: argparse.Namespace) -> None:
    model, served = model_path()
    source = work / "prefix.jsonl"
    requests = make_file(source, served, args.docs, args.questions, args.words)
    times: dict[str, list[float]] = {"llmbatch run": [], "run_batch": []}
    for attempt in range(args.repeats):
        rounds: list[tuple[str, Callable[[], float]]] = [
            ("llmbatch run", lambda: ours(source, work / "ours", model, served)),
            ("run_batch", lambda: theirs(source, work / "theirs.jsonl", model, served)),
        ]
        for name, run in rounds if attempt % 2 == 0 else list(reversed(rounds)):
            times[name].append(run())
        print(
            f"  round {attempt + 1}: llmbatch run {times['llmbatch run'][-1]:.1f}s, "
            f"run_batch {times['run_batch'][-1]:.1f}s",
            flush=True,
        )
    mine = contents((work / "ours" / "output.jsonl").read_bytes().splitlines())
    other = contents((work / "theirs.jsonl").read_bytes().splitlines())
    same = sum(1 for cid, text in other.items() if mine.get(cid) == text)
    medians = {name: statistics.median(values) for name, values in times.items()}
    label = f"{args.docs} docs x {args.questions} questions (~{args.words} words), shuffled"
    for name, values in times.items():
        report.add(
            f"{name}, {label} ({requests} req, median of {args.repeats})",
            f"{medians[name]:.1f} s ({', '.join(f'{t:.1f}' for t in values)})",
        )
    speedup = medians["run_batch"] / medians["llmbatch run"]
    report.add("speed-up, llmbatch run vs run_batch", f"{speedup:.2f}x", ">= 1.8x")
    report.add(
        "greedy answers identical per custom_id",
        f"{same}/{len(other)}",
        f"{len(other)}/{len(other)}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--words", type=int, default=700)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    load_before = machine_load()
    print(f"machine: {load_before}", flush=True)
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="llmbatch-prefix-"))
    try:
        compare(report, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(report.table())
    if args.write_results:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        replace_section(
            "prefix-bench",
            "\n".join(
                [
                    "## Prefix grouping (`benchmarks/bench_prefix.py`)",
                    "",
                    f"Run {stamp}: {MODEL}, engine `{json.dumps(ENGINE_ARGS)}`, "
                    f"VLLM_CPU_KVCACHE_SPACE=1; machine {load_before} at the start, "
                    f"{machine_load()} at the end.",
                    "",
                    report.table(),
                    "",
                    "- Both read the same shuffled local file; whole processes, start-up "
                    "included, alternating. `llmbatch run` is plan + run + finalize.",
                ]
            ),
        )


if __name__ == "__main__":
    from children import end_children_with_this_process

    end_children_with_this_process()
    main()
