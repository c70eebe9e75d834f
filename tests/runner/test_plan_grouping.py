"""Prefix grouping in the plan: lines sharing a long prompt prefix become adjacent, groups in
order of first appearance, input order within a group; short unrelated prompts stay put; a
group is not split across chunks when closing a chunk early keeps it whole."""

from __future__ import annotations

import json
import random
from pathlib import Path

from llmbatch.api.lines import Endpoint
from llmbatch.runner.plan.grouping import NO_KEY, PREFIX_LEVELS, grouped_order, prefix_keys
from tests.runner.batches import chat_line, completion_line, write_lines
from tests.runner.plan_check import plan_file

WORDS = [
    "river",
    "stone",
    "cloud",
    "lantern",
    "maple",
    "harbor",
    "ember",
    "quartz",
    "meadow",
    "falcon",
    "orbit",
    "velvet",
]


def document(seed: int, words: int = 700) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def questions_file(tmp_path: Path, documents: int, questions: int, seed: int = 7) -> Path:
    """Documents of ~700 words each asked several questions, shuffled, with short unrelated
    prompts in between. custom_id says doc-<d>-q<q> or short-<i>."""
    lines = [
        chat_line(f"doc-{d}-q{q}", f"{document(d)}\n\nQuestion {q}: what about item {q}?")
        for d in range(documents)
        for q in range(questions)
    ]
    random.Random(seed).shuffle(lines)
    for i in range(0, len(lines), 3):
        lines.insert(i, chat_line(f"short-{i}", f"Say hello number {i}."))
    return write_lines(tmp_path / "in.jsonl", lines)


def expected_order(path: Path) -> list[str]:
    """The rule, written the plain way: a group's place is its first line's; within it,
    input order; a short prompt is a group of its own."""
    ids = [json.loads(raw)["custom_id"] for raw in path.read_bytes().splitlines()]
    group = [cid.rsplit("-q", 1)[0] if cid.startswith("doc-") else cid for cid in ids]
    first = {name: group.index(name) for name in group}
    return [ids[i] for i in sorted(range(len(ids)), key=lambda i: (first[group[i]], i))]


def fed_ids(path: Path, output: Path, **options: object) -> tuple[list[list[str]], int]:
    planned = plan_file(path, output, **options)
    chunks = planned.chunk_lines(path.read_bytes())
    ids = [[json.loads(raw)["custom_id"] for _, raw in chunk] for chunk in chunks]
    return ids, planned.summary.grouped_lines


def test_documents_with_several_questions_are_grouped(tmp_path: Path) -> None:
    path = questions_file(tmp_path, documents=6, questions=5)
    chunks, grouped = fed_ids(path, tmp_path / "out")
    assert chunks == [expected_order(path)]
    assert grouped == 30
    fed = chunks[0]
    for d in range(6):
        places = [i for i, cid in enumerate(fed) if cid.startswith(f"doc-{d}-")]
        assert places == list(range(places[0], places[0] + 5)), d
    shorts = [cid for cid in fed if cid.startswith("short-")]
    assert shorts == sorted(shorts, key=lambda cid: int(cid.split("-")[1]))


def test_short_unrelated_prompts_keep_input_order(tmp_path: Path) -> None:
    lines = [chat_line(f"r{i}", f"Translate to French: sentence {i}") for i in range(40)]
    path = write_lines(tmp_path / "in.jsonl", lines)
    chunks, grouped = fed_ids(path, tmp_path / "out")
    assert chunks == [[f"r{i}" for i in range(40)]]
    assert grouped == 0


def test_long_shared_system_prompt_then_documents(tmp_path: Path) -> None:
    """One long system prompt for every line (level 1), then per document (a longer level):
    each document's questions still end up together."""
    system = "You answer questions about documents. " * 30  # ~1,100 bytes
    lines = []
    for d in range(4):
        for q in range(3):
            body_messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": f"{document(d, 1500)}\nQ{q}?"},
            ]
            raw = json.loads(chat_line(f"doc-{d}-q{q}", "x"))
            raw["body"]["messages"] = body_messages
            lines.append(json.dumps(raw).encode())
    random.Random(3).shuffle(lines)
    path = write_lines(tmp_path / "in.jsonl", lines)
    (fed,), grouped = fed_ids(path, tmp_path / "out")
    assert grouped == 12
    documents = [cid.rsplit("-q", 1)[0] for cid in fed]
    runs = [name for i, name in enumerate(documents) if i == 0 or documents[i - 1] != name]
    assert len(runs) == 4, fed


def test_a_group_is_not_split_when_an_early_cut_keeps_it_whole(tmp_path: Path) -> None:
    lines = [chat_line(f"doc-{d}-q{q}", f"{document(d)}\nQ{q}") for d in range(5) for q in range(4)]
    path = write_lines(tmp_path / "in.jsonl", lines)
    chunks, _ = fed_ids(path, tmp_path / "out", chunk_lines=10)
    assert [len(chunk) for chunk in chunks] == [8, 8, 4]
    for chunk in chunks:
        documents = {cid.rsplit("-q", 1)[0] for cid in chunk}
        assert len(chunk) == 4 * len(documents)


def test_completion_prompts_group_by_prefix(tmp_path: Path) -> None:
    lines = [completion_line(f"p{d}{q}", f"{document(d)} Q{q}") for q in range(2) for d in range(3)]
    path = write_lines(tmp_path / "in.jsonl", lines)
    (fed,), grouped = fed_ids(path, tmp_path / "out", endpoint=Endpoint.COMPLETIONS)
    assert fed == ["p00", "p01", "p10", "p11", "p20", "p21"]
    assert grouped == 6


def test_prefix_keys_and_order_units() -> None:
    short = {"messages": [{"role": "user", "content": "hi"}]}
    assert prefix_keys(short) == [NO_KEY] * len(PREFIX_LEVELS)
    long_a = {"messages": [{"role": "user", "content": "a" * 600 + "1"}]}
    long_b = {"messages": [{"role": "user", "content": "a" * 600 + "2"}]}
    assert prefix_keys(long_a)[0] == prefix_keys(long_b)[0] != NO_KEY
    assert prefix_keys(long_a)[1:] == [NO_KEY] * (len(PREFIX_LEVELS) - 1)
    # Positions 0 and 2 share level 1; 1 has no key: 0, 2, then 1.
    keys = [prefix_keys(b)[0] for b in (long_a, short, long_b)]
    order, groups = grouped_order([keys], 3)
    assert order == [0, 2, 1]
    assert list(groups) == [0, 1, 0]
