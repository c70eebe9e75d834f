"""Progress once the plan exists: its totals from the first minute, one shared total whatever
the shards report, counters that never go backwards and never exceed the total."""

from __future__ import annotations

from llmbatch.controller.decide import decide
from tests.controller.factories import (
    PLAN,
    at,
    batchjob,
    job,
    observed,
    pod,
    progress,
    validated,
)


def running(**extra: object) -> dict[str, object]:
    return batchjob(validated("Running", startTime="2026-01-01T12:01:00Z", **extra))


def test_totals_from_the_plan_before_any_shard_reported() -> None:
    decision = decide(observed(batchjob(validated("Queued")), at(1), job=job(active=2), plan=PLAN))
    status = decision.wire
    # The two lines the plan refused are failed already; they never reach a shard.
    assert status["requestCounts"] == {"total": 20, "completed": 0, "failed": 2}
    assert status["progress"] == "2/20"
    assert status["usage"] == {"promptTokens": 900, "completionTokens": 0}
    assert status["plan"]["tokenCounter"] == "tokenizer"
    assert [s["state"] for s in status["shards"]] == ["Pending", "Pending"]


def test_the_total_is_the_plans_not_the_sum_of_the_shards() -> None:
    # Shards claim chunks: each document carries the plan's total, not a share of its own.
    documents = [progress(0, total=20, completed=4), progress(1, total=20, completed=5, failed=1)]
    with_plan = decide(
        observed(
            running(),
            at(2),
            job=job(active=2),
            pods=[pod(0), pod(1)],
            progress=documents,
            plan=PLAN,
        )
    )
    assert with_plan.wire["requestCounts"] == {"total": 20, "completed": 9, "failed": 3}
    assert with_plan.wire["progress"] == "12/20"
    # The shards did 10 of the 18 runnable lines in the minute since the first one started:
    # the 8 left take 48 s more.
    assert with_plan.wire["eta"] == "2026-01-01T12:02:48Z"


def test_progress_never_exceeds_the_total() -> None:
    # A chunk recomputed after a kill is counted by the killed shard and its successor until
    # finalize counts exactly.
    documents = [progress(0, total=20, completed=11), progress(1, total=20, completed=10)]
    decision = decide(
        observed(
            running(),
            at(3),
            job=job(active=2),
            pods=[pod(0), pod(1)],
            progress=documents,
            plan=PLAN,
        )
    )
    counts = decision.wire["requestCounts"]
    assert counts == {"total": 20, "completed": 18, "failed": 2}
    assert decision.wire["progress"] == "20/20"


def test_counters_never_go_backwards_with_a_plan() -> None:
    before = {"total": 20, "completed": 12, "failed": 2}
    decision = decide(
        observed(
            running(requestCounts=before),
            at(3),
            job=job(active=2),
            pods=[pod(0), pod(1)],
            progress=[progress(0, total=20, completed=3)],
            plan=PLAN,
        )
    )
    assert decision.wire["requestCounts"] == before


def test_prompt_tokens_are_the_plans_until_the_shards_report_more() -> None:
    few = [progress(0, total=20, completed=5)]  # 50 prompt tokens
    many = [progress(0, total=20, completed=18)]
    obs = observed(running(), at(3), job=job(active=2), pods=[pod(0)], progress=few, plan=PLAN)
    assert decide(obs).wire["usage"]["promptTokens"] == 900
    huge = PLAN.model_copy(update={"prompt_tokens": 100})
    obs = observed(running(), at(3), job=job(active=2), pods=[pod(0)], progress=many, plan=huge)
    assert decide(obs).wire["usage"]["promptTokens"] == 180
