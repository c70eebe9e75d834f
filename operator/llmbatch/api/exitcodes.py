"""Runner exit codes: the contract between a runner pod and the operator's podFailurePolicy.

0 and the retryable code follow the usual meaning; the others tell the operator *why* a shard
stopped, so it can fail an index at once (permanent) or move the batch to Expired/Cancelled
without spending retries.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    # Anything not listed (crash, OOM, lost S3 connection) is retried by the Job.
    RETRYABLE = 1
    # Bad arguments, a missing input object or bucket, a model that cannot load: retrying
    # cannot help, so the podFailurePolicy fails the index at once.
    PERMANENT = 42
    # The deadline passed; unstarted lines were recorded as batch_expired.
    EXPIRED = 43
    # SIGTERM (cancel, preemption, pod deletion): finished work is committed and nothing else
    # is recorded; the Job's next pod runs the rest, or finalize --reason cancelled records it.
    CANCELLED = 44
