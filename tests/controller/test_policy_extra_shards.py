"""Extra shards that fail or disappear (policy/extra_shards.py, the lost-shard path of
policy/elastic.py, failure.extra_shard_failure): a permanent error fails the batch as a run
Job shard's does; any other failure, or a deleted Job, is a lost shard that is counted,
reported, and decided on again after the scaling interval."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from llmbatch.api.conditions import Reason
from llmbatch.api.phases import Phase
from llmbatch.controller.actions import (
    CreateExtraRunJob,
    DeleteExtraRunJob,
    SetRunJobSuspended,
)
from llmbatch.controller.decide import Decision, decide
from llmbatch.controller.handle_scaling import extra_job_names, extras_to_read
from llmbatch.controller.jobview import view_job
from llmbatch.controller.observation import Observation
from llmbatch.controller.policy.extra_shards import ExtraJobs, Placement, place, sort_extras
from llmbatch.controller.policy.scaling import ScalingSettings
from tests.controller.factories import (
    at,
    condition,
    elastic_body,
    job,
    pod,
    running_obs,
    scaling_events,
    two_shards,
    validated,
)

HISTORY = [{"time": "2026-01-01T12:01:00Z", "from": 1, "to": 3, "reason": "ScaledUp"}]


def running() -> dict[str, Any]:
    return job(name="extra", active=1)


def failed(exit_code: int, words: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An extra Job whose one index failed (the Job controller's FailedIndexes), and its pods:
    the last one exited with ``exit_code``."""
    body = job(name="extra", failed_reason="FailedIndexes", failed_indexes="0")
    body["status"]["conditions"][0]["message"] = "Job has failed indexes"
    last = pod(0, phase="Failed", exit_code=exit_code)
    if words:
        last["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = words
    return body, [pod(0, phase="Failed", exit_code=1), last]


def three_shards(now: datetime, *extras: Any, rate: float = 0.01, **status: Any) -> Observation:
    """parallelism 1, maxParallelism 3: the status counts 3 shards (added at minute 1)."""
    jobs = tuple(extra[0] if isinstance(extra, tuple) else extra for extra in extras)
    pods = tuple(extra[1] if isinstance(extra, tuple) else [pod(0)] for extra in extras)
    fields = {"shardCount": 3, "shardHistory": HISTORY, **status}
    return running_obs(now, fields, rate=rate, extras=jobs, extra_pods=pods)


def extra_actions(decision: Decision) -> list[Any]:
    kinds = CreateExtraRunJob | DeleteExtraRunJob | SetRunJobSuspended
    return [a for a in decision.actions if isinstance(a, kinds)]


# -- which Jobs hold a shard, and where new shards go ----------------------------------------


def test_sort_extras_by_what_they_mean_for_the_count() -> None:
    gone_at_deadline = failed(43)
    views = [
        view_job(running(), [pod(0)]),  # 1: holds a shard
        view_job(*failed(1)),  # 2: lost
        view_job(None),  # 3: no Job
        view_job(running(), [pod(0)]),  # 4: being removed
        view_job(*gone_at_deadline),  # 5: stopped at the deadline: still counted
    ]
    extras = sort_extras(views, deleting=frozenset({4}))
    assert extras.held == (1, 5)
    assert extras.failed == (2,)
    assert extras.taken == frozenset({1, 2, 4, 5})


def test_place_keeps_running_shards_and_new_ones_fill_from_the_bottom() -> None:
    gap = ExtraJobs(held=(2, 3), taken=frozenset({2, 3}))
    # A gap left by a lost shard is filled; the running shards keep their Jobs.
    assert place(gap, 3, 3) == Placement(keep=(2, 3), create=(1,))
    # Removing takes the highest.
    assert place(gap, 1, 3) == Placement(keep=(2,), delete=(3,))
    assert place(gap, 0, 3) == Placement(delete=(2, 3))
    # A lowered maxParallelism: Jobs above the new limit go, whatever their state.
    assert place(gap, 2, 2) == Placement(keep=(2,), create=(1,), delete=(3,))
    assert place(gap, 2, 3).numbers == (2, 3)


def test_a_new_shard_never_takes_a_number_above_the_count() -> None:
    # Jobs 1 and 2 failed: a new first shard waits for Job 1 to go rather than becoming
    # Job 3, which a later pass (reading up to the count) would not look for.
    lost = ExtraJobs(failed=(1, 2), taken=frozenset({1, 2}))
    assert place(lost, 1, 3) == Placement(delete=(1,), short=1)
    # Job 2 is a lost shard's too, but not in the way of one new shard: it stays for its logs.
    held_and_lost = ExtraJobs(held=(2,), failed=(1,), taken=frozenset({1, 2}))
    assert place(held_and_lost, 2, 3) == Placement(keep=(2,), delete=(1,), short=1)


# -- a lost shard ---------------------------------------------------------------------------


def test_an_extra_shard_out_of_retries_is_lost_not_fatal() -> None:
    decision = decide(three_shards(at(10), running(), failed(1, "CUDA error: unknown")))
    assert decision.phase == Phase.RUNNING
    status = decision.wire
    assert status["shardCount"] == 2
    assert [(c["from"], c["to"], c["reason"]) for c in status["shardHistory"]][-1] == (
        3,
        2,
        "ShardLost",
    )
    scaling = condition(status, "Scaling")
    assert (scaling["status"], scaling["reason"]) == ("True", "ShardLost")
    for words in ("Job demo-run-2 failed", "FailedIndexes", "exit code 1", "CUDA error"):
        assert words in scaling["message"], scaling["message"]
    assert "Shards 3 -> 2" in scaling["message"]
    [event] = scaling_events(decision.events)
    assert (event.type, event.reason) == ("Warning", "ShardLost")
    # Nothing else moves in this pass; the failed Job stays for kubectl logs.
    assert extra_actions(decision) == []
    # The summary shows the lost shard as failed.
    shards = {s["index"]: s["state"] for s in status["shards"]}
    assert shards == {0: "Running", 1: "Running", 2: "Failed"}


def test_after_a_loss_the_policy_decides_again_after_its_interval() -> None:
    # Behind at 2 shards (0.003 req/s each: 3000 s of work, 2640 s before the margin).
    lost = decide(three_shards(at(10), running(), failed(1), rate=0.003))
    assert lost.wire["shardCount"] == 2

    def later(seconds: float, *extras: Any) -> Decision:
        obs = three_shards(at(10) + timedelta(seconds=seconds), *extras, rate=0.003)
        return decide(replace(obs, status=lost.status))

    cooling = later(30, running(), failed(1))
    assert condition(cooling.wire, "Scaling")["reason"] == "Cooldown"
    assert extra_actions(cooling) == []
    # After the interval: a shard is added; its number is the lost one's, so that Job goes
    # first and the count moves once the number is free.
    freeing = later(61, running(), failed(1))
    assert extra_actions(freeing) == [DeleteExtraRunJob(2)]
    assert freeing.wire["shardCount"] == 2
    message = condition(freeing.wire, "Scaling")["message"]
    assert "1 more once the Job of a lost shard is deleted" in message
    added = later(62, running(), None)
    assert extra_actions(added) == [CreateExtraRunJob(2)]
    assert added.wire["shardCount"] == 3
    assert added.wire["shardHistory"][-1]["reason"] == "ScaledUp"


def test_an_extra_job_deleted_by_someone_is_a_lost_shard() -> None:
    obs = three_shards(at(10), running(), None)
    decision = decide(obs)
    assert decision.wire["shardCount"] == 2
    scaling = condition(decision.wire, "Scaling")
    assert scaling["reason"] == "ShardLost"
    assert "1 extra shard Job(s) gone" in scaling["message"]
    # Not re-created behind the user's back: the policy decides on the shards left.
    assert extra_actions(decision) == []


def test_a_removed_shard_still_stopping_is_not_lost() -> None:
    """A shard removed by the policy keeps its Job (foreground deletion) until its pod has
    committed and exited: it holds no shard any more, and it is not a loss."""
    history = [*HISTORY, {"time": "2026-01-01T12:05:00Z", "from": 3, "to": 2, "reason": "x"}]
    # 0.005 req/s a shard: on time with 2 shards, late with 1 (steady).
    obs = three_shards(at(10), running(), running(), rate=0.005, shardCount=2, shardHistory=history)
    decision = decide(replace(obs, extra_deleting=frozenset({2})))
    assert decision.wire["shardCount"] == 2
    assert condition(decision.wire, "Scaling")["reason"] != "ShardLost"
    assert extra_actions(decision) == []


def test_an_extra_shard_stopped_at_the_deadline_is_not_lost() -> None:
    # 0.0035 req/s a shard: on time with 3 shards, not far enough ahead with 2 (steady).
    decision = decide(three_shards(at(10), running(), failed(43), rate=0.0035))
    assert decision.wire["shardCount"] == 3
    assert condition(decision.wire, "Scaling")["reason"] != "ShardLost"


def test_an_extra_shard_with_the_permanent_error_fails_the_batch() -> None:
    decision = decide(three_shards(at(10), failed(42, "model /models/tiny not found"), running()))
    assert decision.phase == Phase.FAILED
    assert decision.status.reason == Reason.PERMANENT_ERROR
    message = decision.status.message or ""
    for words in ("extra shard 1", "code 42", "model /models/tiny not found", "job/demo-run-1"):
        assert words in message, message
    actions = extra_actions(decision)
    # The run Job's shards stop; the other extra shard is removed; the failed Job stays.
    assert SetRunJobSuspended(True) in actions
    assert DeleteExtraRunJob(2) in actions
    assert DeleteExtraRunJob(1) not in actions
    assert decision.wire["shardCount"] == 1


# -- settings and reads ---------------------------------------------------------------------


def test_the_operator_settings_steer_the_decision() -> None:
    """The interval and hysteresis come from the operator's settings (config.py)."""
    # Scaled up 20 s ago: within the default interval (a minute), past the configured one.
    obs = two_shards(at(10), scaled_up_at=at(10) - timedelta(seconds=20), rate=0.001)
    assert condition(decide(obs).wire, "Scaling")["reason"] == "Cooldown"
    quick = replace(obs, scaling=ScalingSettings(interval=timedelta(seconds=10)))
    assert condition(decide(quick).wire, "Scaling")["reason"] == "ScaledUp"


def test_reads_reach_every_extra_job_that_may_exist() -> None:
    """Up to the count plus one, and up to the highest shard the summary lists (a Job kept
    while a lower one was lost)."""
    body = elastic_body(validated("Running", shardCount=2), maxParallelism=5)
    obs = running_obs(at(10), {"shardCount": 2}, maxParallelism=5)
    assert extras_to_read(obs) == 2
    listed = [{"index": 0}, {"index": 3}]
    high = running_obs(at(10), {"shardCount": 2, "shards": listed}, maxParallelism=5)
    assert extras_to_read(high) == 4
    body["status"]["shards"] = listed
    assert extra_job_names(body) == ["demo-run-1", "demo-run-2", "demo-run-3"]
