"""Moved to llmbatch.api.exitcodes; kept until the controller imports it from there."""

from llmbatch.api.exitcodes import ExitCode as ExitCode
