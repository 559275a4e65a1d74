"""What a workflow tells the operator when a step failed: the innermost message."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError


def failure_reason(error: BaseException) -> str:
    """The message of the failure at the root of an activity or child workflow error."""
    if isinstance(error, ActivityError | ChildWorkflowError) and error.cause is not None:
        return failure_reason(error.cause)
    if isinstance(error, ApplicationError):
        return error.message
    return str(error) or type(error).__name__
