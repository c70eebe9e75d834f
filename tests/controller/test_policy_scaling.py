"""The deadline-driven shard count: the pure decision, the rate window, the extra Jobs and
what a pass does with them (policy/scaling.py, scaling_state.py, policy/elastic.py)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from llmbatch.api.batchjob import BatchJobSpec
from llmbatch.api.conditions import Reason
from llmbatch.api.documents import ShardProgress
from llmbatch.api.timefmt import format_time
from llmbatch.controller.actions import (
    CreateExtraRunJob,
    CreateFinalizeJob,
    DeleteExtraRunJob,
)
from llmbatch.controller.build_jobs import build_extra_run_job, build_runner_job
from llmbatch.controller.decide import decide
from llmbatch.controller.gpu_time import seconds_since
from llmbatch.controller.jobview import PodSpan, pod_span, view_job
from llmbatch.controller.policy.scaling import (
    ScalingInputs,
    ScalingSettings,
    decide_scaling,
    safety_margin,
)
from llmbatch.controller.scaling_state import RateWindow
from llmbatch.controller.validation import check_spec
from tests.controller.factories import (
    CREATED,
    OK,
    PLAN,
    at,
    batchjob,
    condition,
    elastic_body,
    job,
    observed,
    pod,
    running_obs,
    scaling_events,
    two_shards,
    validated,
)
from tests.controller.test_build_jobs import CONFIG

NOW = CREATED + timedelta(minutes=10)


def inputs(**overrides: Any) -> ScalingInputs:
    """One shard at 1 request/s, 2000 requests left, the deadline in 30 min (margin 3 min)."""
    base = ScalingInputs(
        now=NOW,
        deadline=NOW + timedelta(minutes=30),
        remaining=2000,
        per_shard_rate=1.0,
        shards=1,
        floor=1,
        ceiling=4,
        pending=0,
        last_change=None,
        margin=timedelta(minutes=3),
    )
    return replace(base, **overrides)


# -- the decision ---------------------------------------------------------------------------


def test_behind_adds_the_fewest_shards_that_meet_the_deadline() -> None:
    # 2000 s of work for one shard, 1620 s left before the margin: two shards do it.
    decision = decide_scaling(inputs())
    assert (decision.target, decision.reason) == (2, Reason.SCALED_UP)
    # 5000 requests need ceil(5000/1620) = 4 shards, at once.
    assert decide_scaling(inputs(remaining=5000)).target == 4
    message = decision.message
    for number in ("rate 1 req/s", "2000 requests left", "deadline", "shards 1 -> 2"):
        assert number in message, message
    assert format_time(NOW + timedelta(minutes=30)) in message


def test_behind_at_the_ceiling_says_so_and_stays() -> None:
    decision = decide_scaling(inputs(remaining=50_000, shards=4))
    assert (decision.target, decision.reason) == (4, Reason.AT_MAX_PARALLELISM)


def test_ahead_with_room_removes_one_shard() -> None:
    # 600 requests at 3 shards: 200 s; with 2 shards 300 s, well before 1800 - 360 s.
    decision = decide_scaling(inputs(remaining=600, shards=3))
    assert (decision.target, decision.reason) == (2, Reason.SCALED_DOWN)
    assert "shards 3 -> 2" in decision.message


def test_never_below_the_floor() -> None:
    decision = decide_scaling(inputs(remaining=10, shards=2, floor=2))
    assert (decision.target, decision.reason) == (2, Reason.SCALE_STEADY)


def test_hysteresis_between_the_two_thresholds_holds() -> None:
    # At 2 shards the ETA (750 s) clears deadline - margin (1620 s); with one shard fewer it
    # would be 1500 s: not behind, but not before deadline - 2 x margin (1440 s) either.
    decision = decide_scaling(inputs(remaining=1500, shards=2))
    assert (decision.target, decision.reason) == (2, Reason.SCALE_STEADY)


def test_no_flapping_under_noisy_rates() -> None:
    """A rate that wobbles by +-15% around the one that needs two shards: once raised to two,
    the count never goes back down while the work is still 1.3 times what one shard can do."""
    rng = random.Random(7)
    shards, last_change, changes = 1, None, []
    now, remaining = NOW, 2600
    deadline = NOW + timedelta(seconds=2600 / 1.3 + 180)
    for _ in range(40):
        rate = 1.0 * rng.uniform(0.85, 1.15)
        decision = decide_scaling(
            inputs(
                now=now,
                deadline=deadline,
                remaining=remaining,
                per_shard_rate=rate,
                shards=shards,
                last_change=last_change,
            )
        )
        if decision.target != shards:
            changes.append((shards, decision.target))
            shards, last_change = decision.target, now
        now += timedelta(seconds=20)
        remaining -= int(20 * shards * rate)
        if remaining <= 0:
            break
    assert changes == [(1, 2)]


def test_no_new_shards_while_earlier_ones_wait_for_capacity() -> None:
    why = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    decision = decide_scaling(inputs(pending=1, pending_reason=why))
    assert (decision.target, decision.reason) == (1, Reason.WAITING_FOR_CAPACITY)
    assert f"1 shard pod(s) still wait for a GPU or admission ({why})" in decision.message


def test_near_the_deadline_never_scale_down() -> None:
    # Far ahead (10 requests at 3 shards), but 8 min (< 3 x margin) before the deadline.
    decision = decide_scaling(inputs(remaining=10, shards=3, deadline=NOW + timedelta(minutes=8)))
    assert (decision.target, decision.reason) == (3, Reason.NEAR_DEADLINE)
    # Behind near the deadline still adds.
    late = decide_scaling(inputs(remaining=900, deadline=NOW + timedelta(minutes=8)))
    assert late.reason == Reason.SCALED_UP


def test_at_most_one_change_a_minute() -> None:
    recent = inputs(last_change=NOW - timedelta(seconds=30))
    assert decide_scaling(recent).reason == Reason.SCALE_COOLDOWN
    assert decide_scaling(recent).target == 1
    down = inputs(remaining=600, shards=3, last_change=NOW - timedelta(seconds=59))
    assert decide_scaling(down).target == 3
    later = inputs(last_change=NOW - timedelta(seconds=61))
    assert decide_scaling(later).reason == Reason.SCALED_UP


def test_no_rate_no_change() -> None:
    decision = decide_scaling(inputs(per_shard_rate=None))
    assert (decision.target, decision.reason) == (1, Reason.SCALE_MEASURING)
    assert decide_scaling(inputs(remaining=0)).reason == Reason.SCALE_STEADY


def test_a_lowered_ceiling_wins_at_once() -> None:
    decision = decide_scaling(inputs(shards=4, ceiling=2, last_change=NOW))
    assert (decision.target, decision.reason) == (2, Reason.MAX_PARALLELISM_LOWERED)


def test_safety_margin_is_a_bounded_share_of_the_window() -> None:
    assert safety_margin(timedelta(hours=1)) == timedelta(minutes=6)
    assert safety_margin(timedelta(minutes=1)) == timedelta(seconds=15)
    assert safety_margin(timedelta(hours=24)) == timedelta(minutes=30)


def test_margin_and_hysteresis_follow_the_operator_settings() -> None:
    settings = ScalingSettings(
        margin_share=0.2, margin_min=timedelta(minutes=1), margin_max=timedelta(minutes=10)
    )
    assert settings.margin(timedelta(minutes=30)) == timedelta(minutes=6)
    assert settings.margin(timedelta(minutes=1)) == timedelta(minutes=1)
    assert settings.margin(timedelta(hours=1)) == timedelta(minutes=10)
    # The batch the default hysteresis (2 margins) keeps at 2 shards: one shard would finish
    # 1500 s out of 1800 s; at 1.5 margins (1530 s) it is far enough ahead to remove one.
    assert decide_scaling(inputs(remaining=1500, shards=2)).reason == Reason.SCALE_STEADY
    looser = decide_scaling(inputs(remaining=1500, shards=2, hysteresis=1.5))
    assert (looser.target, looser.reason) == (1, Reason.SCALED_DOWN)
    # No removal within one margin beyond the removal threshold of the deadline.
    assert inputs(hysteresis=1.5).near_deadline == timedelta(minutes=7.5)
    assert inputs().near_deadline == timedelta(minutes=9)


# -- the rate window ------------------------------------------------------------------------


def doc(
    shard: int, done: int, seconds: float, *, attempt: int = 1, state: str = "running"
) -> ShardProgress:
    return ShardProgress.model_validate(
        {
            "shard": shard,
            "state": state,
            "completed": done,
            "updatedAt": format_time(CREATED + timedelta(seconds=seconds)),
            "attempt": attempt,
        }
    )


def test_rate_is_the_mean_over_producing_shards() -> None:
    rates = RateWindow(window=60, min_span=15)
    for t in range(0, 61, 10):
        # Shard 0 answers 2/s; shard 1 loads its model (nothing yet) and is left out.
        rates.observe([doc(0, 2 * t, t), doc(1, 0, t)])
    assert rates.per_shard_rate(CREATED.timestamp() + 60) == pytest.approx(2.0)
    for t in range(70, 101, 10):
        rates.observe([doc(0, 2 * t, t), doc(1, (t - 60) * 4, t)])
    # Shard 1 counts from its last idle sample: 4/s; the mean is 3/s.
    assert rates.per_shard_rate(CREATED.timestamp() + 100) == pytest.approx(3.0)


def test_rate_forgets_restarted_and_silent_shards() -> None:
    rates = RateWindow(window=60, min_span=15)
    for t in range(0, 41, 10):
        rates.observe([doc(0, t, t)])
    assert rates.per_shard_rate(CREATED.timestamp() + 40) == pytest.approx(1.0)
    # A new attempt starts over; until it produced for min_span there is no rate.
    rates.observe([doc(0, 45, 50, attempt=2)])
    assert rates.per_shard_rate(CREATED.timestamp() + 50) is None
    # Documents that stopped moving age out.
    rates2 = RateWindow(window=60, min_span=15)
    for t in range(0, 41, 10):
        rates2.observe([doc(0, t, t)])
    assert rates2.per_shard_rate(CREATED.timestamp() + 200) is None


# -- the extra Jobs -------------------------------------------------------------------------


def test_extra_job_is_a_one_shard_indexed_job_with_the_queue_label() -> None:
    body = elastic_body()
    main = build_runner_job(body, CONFIG, at(0))
    extra = build_extra_run_job(body, CONFIG, at(0), 2)
    assert extra["metadata"]["name"] == "demo-run-2"
    assert extra["metadata"]["labels"] == main["metadata"]["labels"]
    assert extra["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert extra["metadata"]["ownerReferences"] == main["metadata"]["ownerReferences"]
    spec = extra["spec"]
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"]) == (1, 1)
    assert spec["suspend"] is True  # Kueue admits it by unsuspending it
    command = spec["template"]["spec"]["containers"][0]["command"]
    # Shard 2 of 3 (the run Job has shard 0): its own progress document and claim order.
    assert command[-4:] == ["--shard-index", "2", "--shard-count", "3"]
    assert build_extra_run_job(body, CONFIG, at(0), 2) == extra  # deterministic
    # The run Job itself is untouched by maxParallelism.
    assert (
        main["spec"]["completions"] == 1
        and "--shard-index" not in main["spec"]["template"]["spec"]["containers"][0]["command"]
    )


def test_max_parallelism_below_parallelism_is_refused() -> None:
    spec, problems = check_spec({**batchjob()["spec"], "parallelism": 3, "maxParallelism": 2})
    assert spec is None
    assert "spec.maxParallelism" in problems[0] and "at least spec.parallelism (3)" in problems[0]
    parsed = BatchJobSpec.model_validate({**batchjob()["spec"], "parallelism": 2})
    assert (parsed.shard_ceiling, parsed.elastic) == (2, False)
    off = BatchJobSpec.model_validate(
        {**batchjob()["spec"], "maxParallelism": 4, "scalingPolicy": "None"}
    )
    assert not off.elastic


def test_a_pass_behind_the_deadline_creates_an_extra_job_and_records_it() -> None:
    # PLAN: 18 runnable requests; 0.005 req/s per shard: 3600 s for one, 2640 s left before
    # the margin (6 min of the 1 h window); two shards make it.
    decision = decide(running_obs(at(10), rate=0.005))
    assert CreateExtraRunJob(1) in decision.actions
    status = decision.wire
    assert status["shardCount"] == 2
    assert status["shardHistory"][-1]["from"] == 1 and status["shardHistory"][-1]["to"] == 2
    scaling = condition(status, "Scaling")
    assert (scaling["status"], scaling["reason"]) == ("True", "ScaledUp")
    events = scaling_events(decision.events)
    assert [e.reason for e in events] == ["ScaledUp"]
    assert "shards 1 -> 2" in events[0].message


def test_a_pass_ahead_deletes_the_last_extra_job() -> None:
    decision = decide(two_shards(at(10), scaled_up_at=at(1), rate=1.0))
    assert DeleteExtraRunJob(1) in decision.actions
    assert decision.wire["shardCount"] == 1
    assert condition(decision.wire, "Scaling")["reason"] == "ScaledDown"


def test_extra_shards_are_listed_in_the_shard_summary() -> None:
    shards = decide(two_shards(at(10))).wire["shards"]
    assert [(s["index"], s["state"]) for s in shards] == [(0, "Running"), (1, "Running")]


def test_pending_extra_shard_blocks_further_scaling() -> None:
    obs = two_shards(at(10), scaled_up_at=at(1), rate=0.001, extra_pod=pod(0, phase="Pending"))
    decision = decide(obs)
    assert not [a for a in decision.actions if isinstance(a, CreateExtraRunJob | DeleteExtraRunJob)]
    scaling = condition(decision.wire, "Scaling")
    assert scaling["reason"] == "WaitingForCapacity"
    assert [e.type for e in scaling_events(decision.events)] == ["Warning"]


def test_suspending_the_batch_removes_the_extra_shards() -> None:
    decision = decide(two_shards(at(10), suspend=True))
    assert DeleteExtraRunJob(1) in decision.actions
    assert decision.wire["shardCount"] == 1


def test_finalize_waits_for_every_run_job() -> None:
    """The run Job completed (every chunk done); the extra shard still runs: it is left to
    exit by itself and finalize is not created until it has."""
    status = validated("Running", shardCount=2)
    body = elastic_body(status)
    extra = job(name="demo-run-1", active=1)
    obs = observed(body, at(10), job=job(complete=True, completed_indexes="0"), plan=PLAN)
    waiting = decide(replace(obs, extra_runs=(view_job(extra, [pod(0)]),)))
    assert not [a for a in waiting.actions if isinstance(a, CreateFinalizeJob | DeleteExtraRunJob)]
    assert "waiting for 1 extra shard pod(s)" in (waiting.status.message or "")
    done = job(name="demo-run-1", complete=True, completed_indexes="0")
    finished = decide(replace(obs, extra_runs=(view_job(done),)))
    assert any(isinstance(a, CreateFinalizeJob) for a in finished.actions)


def test_at_the_deadline_running_extra_shards_stop_by_themselves() -> None:
    """Within the stop grace after the deadline the extra shard is left to stop at it (and
    answer its requests in flight); after the grace it is deleted like the run Job is
    suspended."""

    def at_deadline(seconds: float) -> Any:
        return decide(two_shards(at(60) + timedelta(seconds=seconds)))

    within = at_deadline(10)
    assert within.phase.value == "Finalizing"
    assert not [a for a in within.actions if isinstance(a, DeleteExtraRunJob | CreateFinalizeJob)]
    assert "waiting for" in (within.status.message or "")
    late = at_deadline(60)
    assert DeleteExtraRunJob(1) in late.actions
    assert late.wire["shardCount"] == 1


def test_a_fixed_batch_gets_no_scaling_condition() -> None:
    body = batchjob(validated("Running"), parallelism=2)
    obs = observed(body, at(10), job=job(active=2), pods=[pod(0), pod(1)], validation=OK)
    decision = decide(obs)
    assert decision.wire["shardCount"] == 2
    assert all(c["type"] != "Scaling" for c in decision.wire["conditions"])


# -- GPU-seconds ----------------------------------------------------------------------------


def started_pod(start: datetime, end: datetime | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": format_time(start)}}
    if end is not None:
        state = {
            "terminated": {
                "exitCode": 0,
                "startedAt": format_time(start),
                "finishedAt": format_time(end),
            }
        }
    return {
        "metadata": {"name": "p", "labels": {"batch.kubernetes.io/job-completion-index": "0"}},
        "status": {
            "phase": "Running" if end is None else "Succeeded",
            "containerStatuses": [{"name": "runner", "state": state}],
        },
    }


def test_pod_spans_and_seconds_since() -> None:
    assert pod_span(started_pod(at(1))) == PodSpan(at(1))
    assert pod_span(started_pod(at(1), at(2))) == PodSpan(at(1), at(2))
    assert pod_span(pod(0, phase="Pending")) is None
    spans = [PodSpan(at(1), at(2)), PodSpan(at(1))]
    assert seconds_since(spans, None, at(3)) == 60 + 120
    assert seconds_since(spans, at(2), at(3)) == 60


def test_gpu_seconds_count_each_pods_own_gpu_limit_before_the_spec() -> None:
    # An extra shard made after spec.resources.gpu changed holds what its pod says; a pod
    # that says nothing (no resources in its spec) holds the spec's value.
    own = started_pod(at(1))
    own["spec"] = {"containers": [{"name": "runner", "resources": {"limits": {"x.io/gpu": "4"}}}]}
    obs = running_obs(
        at(3),
        rate=None,
        main_pods=[started_pod(at(1))],
        extras=(job(active=1),),
        extra_pods=([own],),
        resources={"gpu": 2, "gpuResourceName": "x.io/gpu"},
    )
    assert decide(obs).wire["gpuSeconds"] == 2 * 120 + 4 * 120


def test_gpu_seconds_accumulate_across_passes_and_price() -> None:
    obs = running_obs(
        at(3),
        rate=None,
        main_pods=[started_pod(at(1))],
        resources={"gpu": 2},
        pricing={"gpuHourUsd": 3.6},
    )
    first = decide(obs).wire
    assert first["gpuSeconds"] == 2 * 120 and first["costUsd"] == pytest.approx(0.24)
    # The next pass counts only what came after; a pod gone meanwhile is not counted twice.
    later = running_obs(
        at(4),
        {k: first[k] for k in ("gpuSeconds", "gpuSecondsAt")},
        rate=None,
        main_pods=[started_pod(at(1), at(3) + timedelta(seconds=30))],
        resources={"gpu": 2},
    )
    assert decide(later).wire["gpuSeconds"] == 2 * 150
