"""`make demo`'s pieces that need no sandbox: it serves the example's own model, and prints
questions and answers in two columns."""

from __future__ import annotations

from llmbatch_sandbox.catalog import FIXTURES
from llmbatch_sandbox.demo import EXAMPLE, MODEL, Example, side_by_side


def test_the_demo_builds_and_uploads_the_model_the_example_names() -> None:
    example = Example.load(EXAMPLE)
    assert example.name == "smollm2-chat"
    assert MODEL in FIXTURES
    assert example.model_uri == f"s3://llmbatch/models/{MODEL}/"


def test_answers_wrap_in_their_own_column() -> None:
    long_answer = "The largest ocean is the Pacific Ocean, which covers about a third of the Earth."
    rows = side_by_side([("Capital of France?", "Paris."), ("Largest ocean?", long_answer)], 60)
    assert rows[0].split() == ["QUESTION", "ANSWER"]
    assert rows[1] == "  Capital of France?  Paris."
    column = rows[1].index("Paris.")
    assert all(len(row) <= 60 for row in rows)
    continued = rows[3:]
    assert continued and all(row[:column].strip() == "" for row in continued)
    assert " ".join(row.strip() for row in rows[2:]).endswith(long_answer)
