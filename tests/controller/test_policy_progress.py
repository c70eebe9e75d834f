"""Progress and ETA: counters, usage, throughput, shards and the SLAAtRisk condition."""

from __future__ import annotations

from llmbatch.api.batchjob import BatchJobStatus, RequestCounts, ShardStatus
from llmbatch.api.phases import Phase
from llmbatch.controller.decide import decide
from llmbatch.controller.policy import progress as progress_policy
from tests.controller.factories import (
    MANIFEST,
    MANIFEST_COUNTS,
    at,
    batchjob,
    condition,
    finalize_job,
    job,
    observed,
    pod,
    progress,
    validated,
)

# --- Through the state machine (decide) ---------------------------------------------------------


def test_progress_is_aggregated_with_eta_and_throughput() -> None:
    objects = [progress(0, completed=4, failed=1, updated=2), progress(1, completed=5, updated=2)]
    decision = decide(
        observed(
            batchjob(validated("Running")),
            at(2),
            job=job(active=2),
            pods=[pod(0), pod(1)],
            progress=objects,
        )
    )
    status = decision.wire
    assert status["requestCounts"] == {"total": 20, "completed": 9, "failed": 1}
    assert status["usage"] == {"promptTokens": 90, "completionTokens": 72}
    assert status["progress"] == "10/20"
    assert status["throughput"] == 10.0
    # 10 done in the minute since the first shard started: 10 left take one more minute.
    assert status["eta"] == "2026-01-01T12:03:00Z"
    assert condition(status, "SLAAtRisk")["status"] == "False"
    assert [s["state"] for s in status["shards"]] == ["Running", "Running"]
    assert decision.volatile_only is False  # the SLAAtRisk condition is new


def test_progress_only_changes_are_volatile() -> None:
    first = decide(
        observed(
            batchjob(validated("Running")),
            at(2),
            job=job(active=2),
            pods=[pod(0), pod(1)],
            progress=[progress(0, completed=1), progress(1, completed=1)],
        )
    )
    second = decide(
        observed(
            batchjob(first.wire),
            at(2),
            job=job(active=2),
            pods=[pod(0), pod(1)],
            progress=[progress(0, completed=2), progress(1, completed=1)],
        )
    )
    assert second.patch and second.volatile_only


def test_sla_at_risk_turns_true_and_false_again_with_events() -> None:
    slow = [progress(0, completed=1, total=1000, started=1), progress(1, total=1000, started=1)]
    risky = decide(
        observed(
            batchjob(validated("Running")),
            at(10),
            job=job(active=2),
            pods=[pod(0), pod(1)],
            progress=slow,
        )
    )
    assert condition(risky.wire, "SLAAtRisk")["status"] == "True"
    assert risky.sla_changed
    assert any(e.reason == "SLAAtRisk" and e.type == "Warning" for e in risky.events)
    fast = [
        progress(0, completed=995, total=1000, started=1),
        progress(1, completed=4, total=1000, started=1),
    ]
    fine = decide(
        observed(
            batchjob(risky.wire), at(11), job=job(active=2), pods=[pod(0), pod(1)], progress=fast
        )
    )
    assert condition(fine.wire, "SLAAtRisk")["status"] == "False"
    assert any(e.reason == "SLAWithinDeadline" for e in fine.events)
    assert condition(fine.wire, "SLAAtRisk")["lastTransitionTime"] == "2026-01-01T12:11:00Z"


def test_counters_never_go_backwards_after_a_shard_restart() -> None:
    status = validated("Running", requestCounts={"total": 20, "completed": 12, "failed": 0})
    decision = decide(
        observed(
            batchjob(status),
            at(3),
            job=job(active=2),
            pods=[pod(0)],
            progress=[progress(0, completed=3), progress(1, completed=4)],
        )
    )
    assert decision.wire["requestCounts"]["completed"] == 12


def test_unknown_total_is_shown_as_unknown_not_as_the_crd_default_zero() -> None:
    status = validated("Running", requestCounts={"total": 0, "completed": 0, "failed": 0})
    decision = decide(
        observed(
            batchjob(status),
            at(2),
            job=job(active=2),
            pods=[pod(0), pod(1)],
            progress=[progress(0, total=None, completed=2), progress(1, total=None)],
        )
    )
    assert decision.wire["progress"] == "2/?"
    assert "total" not in decision.wire["requestCounts"]
    assert "eta" not in decision.wire


def test_finished_batch_shows_its_average_throughput() -> None:
    status = validated("Finalizing", reason="ShardsComplete", startTime="2026-01-01T12:01:00Z")
    done = decide(
        observed(
            batchjob(status),
            at(2),
            job=job(complete=True),
            finalize=finalize_job(complete=True),
            manifest=MANIFEST,
        )
    )
    assert done.wire["throughput"] == round(344 / 60, 1)


# --- The policy alone ---------------------------------------------------------------------------


def _running(**status: object) -> BatchJobStatus:
    return BatchJobStatus.model_validate({**validated("Running"), **status})


def test_live_counts_keep_the_larger_of_old_and_new() -> None:
    status = _running(requestCounts={"total": 20, "completed": 12, "failed": 1})
    obs = observed(batchjob(), at(3), progress=[progress(0, completed=3), progress(1, completed=4)])
    assert obs.aggregate is not None
    progress_policy.record_live(status, obs.aggregate, Phase.RUNNING)
    assert status.request_counts == RequestCounts(total=20, completed=12, failed=1)
    assert status.progress == "13/20"
    assert status.throughput == 10.0


def test_throughput_is_zero_unless_running() -> None:
    status = _running()
    obs = observed(batchjob(), at(3), progress=[progress(0, completed=3)])
    assert obs.aggregate is not None
    progress_policy.record_live(status, obs.aggregate, Phase.FINALIZING)
    assert status.throughput == 0.0
    assert status.progress == "3/?"  # one shard of two reported: the total is unknown


def test_eta_past_the_deadline_is_at_risk_and_no_eta_outside_running() -> None:
    slow = [progress(0, completed=1, total=1000), progress(1, total=1000)]
    obs = observed(batchjob(), at(10), job=job(active=2), progress=slow)
    status = _running()
    update = progress_policy.eta_verdict(status, obs, Phase.RUNNING)
    assert update is not None and (update.status, update.reason) == ("True", "EtaPastDeadline")
    assert status.eta is not None and status.eta > at(60)
    assert progress_policy.eta_verdict(status, obs, Phase.SUSPENDED) is None
    assert status.eta is None


def test_final_counts_come_from_the_manifest() -> None:
    status = _running()
    obs = observed(batchjob(), at(6), manifest=MANIFEST)
    assert progress_policy.record(status, obs, Phase.SUCCEEDED) is None
    assert status.request_counts == RequestCounts(**MANIFEST_COUNTS)
    assert status.progress == "20/20"
    assert status.error_file == "s3://llmbatch/out/demo/errors.jsonl"


def test_shard_summary_by_job_state_with_restarts_never_decreasing() -> None:
    obs = observed(
        batchjob(),
        at(3),
        job=job(active=1, completed_indexes="0"),
        pods=[pod(1), pod(1, "Failed", exit_code=1)],
        progress=[progress(0, completed=10), progress(1, completed=2)],
    )
    assert obs.aggregate is not None
    before = [ShardStatus(index=1, state="Running", restarts=3)]
    shards = progress_policy.shard_summary(obs, obs.aggregate, before)
    assert [(s.index, s.state, s.completed, s.restarts) for s in shards] == [
        (0, "Succeeded", 10, 0),
        (1, "Running", 2, 3),
    ]
