"""The sandbox's batch/v1 Job controller (see :mod:`.controller`)."""

from llmbatch_sandbox.jobcontroller.controller import JobController

__all__ = ["JobController"]
