"""The one operation skeleton: claim, the steps, finish; on a failure or a cancellation, a
compensation that runs to its end, and one mapping from what went wrong to the reason recorded
and the workflow's failure.

    claimed = await <claim step>                     # outside: a failed claim holds nothing
    return await operation(
        steps(), compensate, failure_type="ProvisionFailed", reason=...,
    )

`compensate(reason, cancelled)` undoes what the steps did and records the reason (returning it,
possibly completed: "...; unwinding incomplete: ..."); a cancellation arriving while it runs
waits for it (workflows.cancellation.to_the_end). Then a cancellation ends the workflow
cancelled and a failure ends it failed with a non-retryable ApplicationError of
`failure_type`, so an SRE resets it once the cause is fixed rather than Temporal retrying it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)

from workflows.cancellation import to_the_end
from workflows.failures import failure_reason

T = TypeVar("T")

# The patch of the command sequences that came with this skeleton (docs/workflows.md): a
# compensation runs to its end even when a cancellation arrives during it; a cancellation is
# compensated like a failure, however it reaches the workflow (a child's included); a delete of
# a cluster runs to its end.
OPERATION_SKELETON = "operation-skeleton"


class OperationFailed(Exception):
    """A step failed for a reason worth telling the operator verbatim."""


FAILURES = (
    ActivityError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,  # another operation holds the same workflow id
    OperationFailed,
)


async def operation(
    steps: Awaitable[T],
    compensate: Callable[[str, bool], Awaitable[str]],
    *,
    failure_type: str,
    reason: Callable[[BaseException], str] = failure_reason,
    cancelled_reason: str = "cancelled",
    before_patch: Literal["compensated", "not-compensated", "to-the-end"] = "compensated",
    cancel_was: Literal["raised", "any"] = "raised",
) -> T:
    """Run the steps; on a failure or a cancellation run `compensate(reason, cancelled)` to its
    end and end the workflow failed (`failure_type`) or cancelled, with the reason it recorded.

    A cancellation is one however it reaches the workflow: raised where it waits, or as the
    cause of an activity's or a child workflow's failure.

    `before_patch` and `cancel_was` say how the workflow met a failure before
    OPERATION_SKELETON, so that runs recorded then replay as they ran: it compensated (a
    cancel arriving meanwhile could cut that short), it did not compensate a cancellation at
    all, or it compensated to the end already; and it took for a cancellation only the one
    raised where it waited, or any (a child's cancellation was a failure then)."""
    try:
        return await steps
    except (*FAILURES, asyncio.CancelledError) as error:
        if workflow.patched(OPERATION_SKELETON):
            cancelled = is_cancelled_exception(error)
            why = cancelled_reason if cancelled else reason(error)
            recorded = await to_the_end(compensate(why, cancelled))
        else:  # as runs recorded before the patch did
            cancelled = (
                is_cancelled_exception(error)
                if cancel_was == "any"
                else isinstance(error, asyncio.CancelledError)
            )
            why = cancelled_reason if cancelled else reason(error)
            if cancelled and before_patch == "not-compensated":
                raise
            if before_patch == "to-the-end":
                recorded = await to_the_end(compensate(why, cancelled))
            else:
                recorded = await compensate(why, cancelled)
        if cancelled:
            raise asyncio.CancelledError(recorded) from error
        raise ApplicationError(recorded, type=failure_type, non_retryable=True) from error


async def nothing_to_undo(reason: str, cancelled: bool) -> str:
    """The compensation of a workflow of one converging step: a retry (an SRE's reset) does
    it again."""
    return reason
