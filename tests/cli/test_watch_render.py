"""The watch display without a cluster: snapshots from status objects, relative times, the
polling loop's outcome and timeout, and the rich progress bar on a terminal."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from llmbatch.cli.cmd_status import ProgressRenderer, Snapshot, WatchExit, follow, relative

NOW = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)


def obj(phase: str | None, done: int = 0, total: int = 10, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "b1"}}
    if phase is not None:
        body["status"] = {
            "phase": phase,
            "requestCounts": {"total": total, "completed": done, "failed": 0},
            **status,
        }
    return body


def test_snapshot_of_an_object_without_status() -> None:
    snap = Snapshot.of(obj(None))
    assert (snap.phase, snap.total, snap.done, snap.terminal) == ("Pending", None, 0, False)
    assert snap.line(NOW).split() == ["Pending", "0/?"]


def test_snapshot_line_names_counts_throughput_eta_deadline_and_risk() -> None:
    snap = Snapshot.of(
        obj(
            "Running",
            4,
            throughput=3.25,
            eta="2026-11-22T21:30:00Z",
            deadline="2026-11-22T21:00:00Z",
            conditions=[{"type": "SLAAtRisk", "status": "True", "reason": "EtaPastDeadline"}],
        )
    )
    line = snap.line(NOW)
    assert "4/10" in line and "3.2 tok/s" in line
    assert "eta in 1h30m" in line and "deadline in 1h" in line and "SLA AT RISK" in line


def test_relative_times() -> None:
    assert relative(NOW + timedelta(seconds=42), NOW) == "in 42s"
    assert relative(NOW - timedelta(minutes=3), NOW) == "3m ago"
    assert relative(NOW + timedelta(days=1, hours=2, minutes=5), NOW) == "in 1d2h"


def test_follow_returns_each_outcome_and_times_out() -> None:
    for phase, code in [
        ("Succeeded", WatchExit.SUCCEEDED),
        ("Failed", WatchExit.FAILED),
        ("Expired", WatchExit.EXPIRED),
        ("Cancelled", WatchExit.CANCELLED),
    ]:
        seen: list[Snapshot] = []
        assert (
            follow(
                iter([obj("Running", 1), obj(phase, 10)]).__next__,
                seen.append,
                interval=0,
                timeout=None,
                sleep=lambda _: None,
            )
            is code
        )
        assert [s.phase for s in seen] == ["Running", phase]
    ticks = iter(range(100))
    assert (
        follow(
            lambda: obj("Running", 1),
            lambda _: None,
            interval=1,
            timeout=3,
            clock=lambda: float(next(ticks)),
            sleep=lambda _: None,
        )
        is WatchExit.TIMEOUT
    )


def test_progress_bar_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    with ProgressRenderer(console) as bar:
        bar(Snapshot.of(obj("Queued", 0, total=0)))
        bar(Snapshot.of(obj("Running", 5, throughput=12.0, deadline="2999-01-01T00:00:00Z")))
        bar(Snapshot.of(obj("Succeeded", 10)))
    text = out.getvalue()
    assert "5/10" in text and "12.0 tok/s" in text and "deadline in" in text
    assert "Succeeded" in text and "10/10" in text


def test_follow_retries_transient_errors_then_gives_up() -> None:
    from llmbatch.cli.cmd_status import TransientFetchError

    answers: list[Any] = [
        TransientFetchError("blip"),
        TransientFetchError("blip"),
        obj("Succeeded", 10),
    ]

    def fetch() -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    errors: list[Exception] = []
    pauses: list[float] = []
    outcome = follow(
        fetch, lambda _: None, interval=1, timeout=None, on_error=errors.append, sleep=pauses.append
    )
    assert outcome is WatchExit.SUCCEEDED
    assert len(errors) == 2 and pauses == [2, 4]  # the pause grows while polls fail

    def broken() -> dict[str, Any]:
        raise TransientFetchError("down")

    with pytest.raises(TransientFetchError):
        follow(broken, lambda _: None, interval=0, timeout=None, max_errors=3, sleep=lambda _: None)
