"""What a reconcile asks the I/O layer to do after the status write succeeded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmbatch.api.documents import FinalizeReason
from llmbatch.notify.delivery import Delivery


@dataclass(frozen=True)
class CreatePlanJob:
    """Create the plan Job (409 AlreadyExists counts as done)."""


@dataclass(frozen=True)
class DeletePlanJob:
    """Stop a plan step that is no longer wanted (cancelled, or the deadline passed)."""


@dataclass(frozen=True)
class CreateRunJob:
    """Create the Indexed Job (409 AlreadyExists counts as done)."""


@dataclass(frozen=True)
class SetRunJobSuspended:
    suspend: bool


@dataclass(frozen=True)
class CreateExtraRunJob:
    """Add the ``number``-th extra shard (a one-index Indexed Job; 409 counts as done)."""

    number: int


@dataclass(frozen=True)
class DeleteExtraRunJob:
    """Remove the ``number``-th extra shard: its pod gets SIGTERM, commits what it finished
    and releases its chunk's lease (404 counts as done)."""

    number: int


@dataclass(frozen=True)
class CreateFinalizeJob:
    reason: FinalizeReason


@dataclass(frozen=True)
class DeleteJobs:
    """ttlSecondsAfterFinished passed: delete the Jobs (and so their pods); results stay."""


@dataclass(frozen=True)
class DeliverWebhook:
    """One attempt of the spec.notify webhook; its outcome is recorded on the BatchJob."""

    delivery: Delivery


Action = (
    CreatePlanJob
    | DeletePlanJob
    | CreateRunJob
    | SetRunJobSuspended
    | CreateExtraRunJob
    | DeleteExtraRunJob
    | CreateFinalizeJob
    | DeleteJobs
    | DeliverWebhook
)


@dataclass(frozen=True)
class EventSpec:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
