"""The deadline-driven shard count: how many shards the batch should run, as a pure function.

The ETA at ``n`` shards is the requests still to answer over ``n`` times the measured
per-shard rate. Shards are added while the ETA at the current count passes the deadline minus
a safety margin (straight to the fewest shards whose ETA clears it, at most the ceiling); one
is removed once the ETA with one shard fewer stays before the deadline minus ``hysteresis``
times the margin (twice, by default). The gap between the two thresholds is the hysteresis: a
count that was just raised is not lowered by the next noisy reading. A change happens at most
once per ``interval``; none while shards added earlier still wait for a GPU (or for Kueue), and
none downwards near the deadline.

The numbers are the operator's to tune (``ScalingSettings``, read by ``config.py`` from the
environment); the defaults are the ones docs/scaling.md explains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from llmbatch.api.conditions import Reason
from llmbatch.api.timefmt import format_time

# A shard count changes at most this often.
DEFAULT_INTERVAL = timedelta(minutes=1)
# The safety margin: a share of the completion window, within bounds.
MARGIN_SHARE = 0.1
MIN_MARGIN = timedelta(seconds=15)
MAX_MARGIN = timedelta(minutes=30)
# A shard is removed only when one fewer would still finish this many margins early.
HYSTERESIS = 2.0
# How far back the per-shard rate looks: long enough to smooth a chunk boundary, short enough
# to follow a real change within a scaling interval.
RATE_WINDOW = timedelta(seconds=90)
# A shard's rate counts once its samples span at least this long (so the window must be longer).
MIN_RATE_SPAN = timedelta(seconds=15)


@dataclass(frozen=True)
class ScalingSettings:
    """The operator's settings of the scaling policy (LLMBATCH_SCALING_* in config.py)."""

    rate_window: timedelta = RATE_WINDOW
    interval: timedelta = DEFAULT_INTERVAL
    margin_share: float = MARGIN_SHARE
    margin_min: timedelta = MIN_MARGIN
    margin_max: timedelta = MAX_MARGIN
    hysteresis: float = HYSTERESIS

    def margin(self, window: timedelta) -> timedelta:
        return safety_margin(window, self)


DEFAULT_SETTINGS = ScalingSettings()


def safety_margin(window: timedelta, settings: ScalingSettings = DEFAULT_SETTINGS) -> timedelta:
    """A share of the completion window (10%), within bounds (at least 15 s, at most 30 min)."""
    share = window * settings.margin_share
    return min(settings.margin_max, max(settings.margin_min, share))


@dataclass(frozen=True)
class ScalingInputs:
    now: datetime
    deadline: datetime
    # Requests not answered yet (the plan's runnable lines minus what the shards finished).
    remaining: int
    # Requests/s of one producing shard, smoothed over the recent window; None until measured.
    per_shard_rate: float | None
    # The shard count the batch runs now (parallelism plus the extra shards).
    shards: int
    floor: int
    ceiling: int
    # Shard pods (or Jobs) that wait for capacity: unscheduled, or not admitted by Kueue.
    pending: int
    # When the shard count last changed; None if never.
    last_change: datetime | None
    margin: timedelta
    interval: timedelta = DEFAULT_INTERVAL
    # Why the pending shards wait, as the scheduler says it (PodScheduled=False message).
    pending_reason: str = ""
    # Remove a shard only when one fewer still finishes this many margins before the deadline.
    hysteresis: float = HYSTERESIS

    @property
    def near_deadline(self) -> timedelta:
        """Closer to the deadline than this (one margin beyond the removal threshold: three
        margins by default), shards are never removed."""
        return (self.hysteresis + 1) * self.margin


@dataclass(frozen=True)
class ScalingDecision:
    target: int
    reason: Reason
    message: str
    # The ETA at the current shard count, when a rate was measured.
    eta: datetime | None = None

    def changes(self, shards: int) -> bool:
        return self.target != shards


def eta_seconds(remaining: int, rate: float, shards: int) -> float:
    return remaining / (rate * max(shards, 1))


def decide_scaling(inputs: ScalingInputs) -> ScalingDecision:
    shards = inputs.shards
    if shards > inputs.ceiling or shards < inputs.floor:
        # maxParallelism was lowered (or the count is off): the spec wins at once.
        target = min(max(shards, inputs.floor), inputs.ceiling)
        return _decision(inputs, target, Reason.MAX_PARALLELISM_LOWERED, "spec limits")
    rate = inputs.per_shard_rate
    if inputs.remaining <= 0:
        return ScalingDecision(shards, Reason.SCALE_STEADY, "no request left to run")
    if rate is None or rate <= 0:
        return ScalingDecision(
            shards,
            Reason.SCALE_MEASURING,
            f"measuring the per-shard rate ({inputs.remaining} requests left, {shards} shards)",
        )
    left = (inputs.deadline - inputs.now).total_seconds()
    margin = inputs.margin.total_seconds()
    if left <= 0:
        return _decision(inputs, shards, Reason.SCALE_STEADY, "the deadline has passed")
    if eta_seconds(inputs.remaining, rate, shards) > left - margin:
        return _behind(inputs, rate, left - margin)
    if (
        shards > inputs.floor
        and eta_seconds(inputs.remaining, rate, shards - 1) < left - inputs.hysteresis * margin
    ):
        return _ahead(inputs, left)
    return _decision(inputs, shards, Reason.SCALE_STEADY, "on time")


def _cooling(inputs: ScalingInputs) -> bool:
    last = inputs.last_change
    return last is not None and inputs.now - last < inputs.interval


def _behind(inputs: ScalingInputs, rate: float, budget: float) -> ScalingDecision:
    shards = inputs.shards
    if shards >= inputs.ceiling:
        return _decision(
            inputs, shards, Reason.AT_MAX_PARALLELISM, "behind, at spec.maxParallelism"
        )
    if inputs.pending > 0:
        why = f" ({inputs.pending_reason})" if inputs.pending_reason else ""
        return _decision(
            inputs,
            shards,
            Reason.WAITING_FOR_CAPACITY,
            f"behind, but {inputs.pending} shard pod(s) still wait for a GPU or admission{why}",
        )
    if _cooling(inputs):
        return _decision(inputs, shards, Reason.SCALE_COOLDOWN, "behind, changed too recently")
    # The fewest shards whose ETA clears the margin (the ceiling if none does).
    needed = math.ceil(inputs.remaining / (rate * budget)) if budget > 0 else inputs.ceiling
    target = min(inputs.ceiling, max(shards + 1, needed))
    return _decision(inputs, target, Reason.SCALED_UP, "behind the deadline")


def _ahead(inputs: ScalingInputs, left: float) -> ScalingDecision:
    shards = inputs.shards
    if left < inputs.near_deadline.total_seconds():
        return _decision(inputs, shards, Reason.NEAR_DEADLINE, "ahead, but near the deadline")
    if _cooling(inputs):
        return _decision(inputs, shards, Reason.SCALE_COOLDOWN, "ahead, changed too recently")
    return _decision(inputs, shards - 1, Reason.SCALED_DOWN, "comfortably ahead")


def _decision(inputs: ScalingInputs, target: int, reason: Reason, why: str) -> ScalingDecision:
    rate = inputs.per_shard_rate
    eta = None
    numbers = f"{inputs.remaining} requests left"
    if rate is not None and rate > 0:
        eta = inputs.now + timedelta(seconds=eta_seconds(inputs.remaining, rate, inputs.shards))
        numbers = (
            f"rate {rate:.3g} req/s per shard, {numbers}, ETA {format_time(eta)} at "
            f"{inputs.shards} shard(s)"
        )
    message = (
        f"{why}: {numbers}, deadline {format_time(inputs.deadline)} (margin "
        f"{inputs.margin.total_seconds():.0f}s); shards {inputs.shards} -> {target} "
        f"(min {inputs.floor}, max {inputs.ceiling})"
    )
    return ScalingDecision(target, reason, message, eta)
