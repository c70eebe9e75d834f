"""Validation: before the Jobs are named, the spec checks and the I/O checks (Secret, input
object) decide whether the batch may run. The checks themselves are in
``controller/validation.py`` (pure) and ``controller/handle_validate.py`` (I/O)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmbatch.api.conditions import ConditionType, Reason
from llmbatch.api.phases import Phase
from llmbatch.controller.policy.verdict import Verdict
from llmbatch.controller.status_conditions import ConditionUpdate

if TYPE_CHECKING:
    from llmbatch.controller.observation import Observation

VALIDATING = "Validating"


def invalid_spec(obs: Observation) -> Verdict:
    """The spec does not parse at all (the CRD schema should have refused it)."""
    return Verdict(Phase.FAILED, Reason.VALIDATION_FAILED, "; ".join(obs.problems))


def _failed(message: str) -> Verdict:
    condition = ConditionUpdate(ConditionType.VALIDATED, "False", Reason.VALIDATION_FAILED, message)
    return Verdict(Phase.FAILED, Reason.VALIDATION_FAILED, message, conditions=(condition,))


def verdict(obs: Observation) -> Verdict | None:
    """While the batch is not validated: failed, pending or retrying. None once the checks
    passed: the batch may run."""
    result = obs.validation
    if obs.problems:
        return _failed("; ".join(obs.problems))
    if result is None:
        return Verdict(
            Phase.VALIDATING,
            VALIDATING,
            "checking the input object, the storage secret and the model source",
        )
    if result.transient:
        pending = ConditionUpdate(
            ConditionType.VALIDATED, "Unknown", "CheckPending", result.message
        )
        return Verdict(
            Phase.VALIDATING, VALIDATING, f"will retry: {result.message}", conditions=(pending,)
        )
    if not result.ok:
        return _failed(result.message)
    return None


def passed(obs: Observation) -> ConditionUpdate:
    message = obs.validation.message if obs.validation else ""
    return ConditionUpdate(ConditionType.VALIDATED, "True", Reason.VALIDATION_PASSED, message)
