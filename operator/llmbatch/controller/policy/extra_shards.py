"""The extra shards' Jobs (spec.maxParallelism) as the shard count sees them: which hold a
shard, which shards were lost, and which numbers new shards take.

Extra shard n runs in the Job ``<name>-run-<n>`` (its shard index is parallelism + n - 1). A
Job *holds* a shard while it exists, is not being deleted and has not failed; one that stopped
at the deadline (exit 43, or its activeDeadlineSeconds) still holds it: the deadline policy
deals with it. A Job that failed otherwise (its retries spent, or not the permanent-error code:
that one fails the batch, ``failure.py``) is a *lost* shard. Nothing of its work is lost: its
committed chunks stay done, and the chunk it held goes to another shard once its lease expires.
Its Job is kept, for ``kubectl logs``, until its number is wanted for a new shard.

status.shardCount is what the last pass counted. When the Jobs now hold fewer extra shards,
the difference was lost (failed, or deleted by someone): the pass records that as a change of
its own before the scaling policy decides again on the shards that are left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmbatch.controller.jobview import JobView


@dataclass(frozen=True)
class ExtraJobs:
    """One pass's extra Jobs, by what they mean for the shard count (numbers from 1)."""

    # Jobs that hold a shard, lowest number first.
    held: tuple[int, ...] = ()
    # Jobs of lost shards still there (failed, not being deleted), lowest number first.
    failed: tuple[int, ...] = ()
    # Every number that has a Job (a new shard cannot take it until that Job is gone).
    taken: frozenset[int] = frozenset()


def holds_shard(view: JobView) -> bool:
    return view.exists and (not view.failed or view.expired_signal)


def sort_extras(views: Sequence[JobView], deleting: frozenset[int] = frozenset()) -> ExtraJobs:
    """``views[n - 1]`` is Job n; ``deleting`` are the numbers marked for deletion."""
    held, failed, taken = [], [], set()
    for number, view in enumerate(views, 1):
        if not view.exists:
            continue
        taken.add(number)
        if number in deleting:
            continue
        if holds_shard(view):
            held.append(number)
        else:
            failed.append(number)
    return ExtraJobs(tuple(held), tuple(failed), frozenset(taken))


def lost_count(counted: int, extras: ExtraJobs) -> int:
    """Extra shards the status counted that no Job holds any more."""
    return max(0, counted - len(extras.held))


@dataclass(frozen=True)
class Placement:
    """Where ``wanted`` extra shards run: Jobs kept, Jobs to create, Jobs to delete."""

    keep: tuple[int, ...] = ()
    create: tuple[int, ...] = ()
    delete: tuple[int, ...] = ()
    # Shards that could not be placed this pass: their number is still taken by the Job of a
    # lost (or removed) shard, deleted now; a later pass places them.
    short: int = 0

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(sorted(self.keep + self.create))


def place(extras: ExtraJobs, wanted: int, limit: int) -> Placement:
    """The Jobs for ``wanted`` extra shards, with numbers up to ``limit`` (maxParallelism -
    parallelism).

    Running shards are kept, the lowest-numbered first, so a lost shard's gap never costs a
    healthy shard its model load; removing one removes the highest. A new shard takes the
    lowest free number not above ``wanted``, so no Job has a number above the count it was
    created with (a later pass reads the Jobs up to that count). When a lost shard's Job holds
    such a number, it is deleted now and the number taken by a later pass.
    """
    wanted = max(0, min(wanted, limit))
    keep = tuple(n for n in extras.held if n <= limit)[:wanted]
    need = wanted - len(keep)
    free = [n for n in range(1, wanted + 1) if n not in extras.taken]
    create = tuple(free[:need])
    short = need - len(create)
    recycle = tuple(n for n in extras.failed if n <= wanted)[:short]
    delete = tuple(sorted({n for n in extras.held if n not in keep} | set(recycle)))
    return Placement(keep, create, delete, short)


def failure_text(view: JobView) -> str:
    """Why a Job failed, in the words of the Job and its last pod (for the event)."""
    parts = [view.failed_reason or "failed"]
    if view.failed_message:
        parts.append(view.failed_message.rstrip("."))
    codes = sorted(view.exit_codes)
    if codes:
        parts.append("exit code " + ", ".join(str(code) for code in codes))
    if view.termination_message:
        parts.append(f"last words: {view.termination_message[-200:]}")
    return "; ".join(parts)
