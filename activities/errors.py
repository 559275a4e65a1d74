"""Turning domain errors into Temporal failures: retryable or not, with a stable type."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from drivers.bmc.base import BmcError
from inventory.errors import InventoryError


def bmc_failure(exc: BmcError) -> ApplicationError:
    return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable)


def inventory_failure(exc: InventoryError) -> ApplicationError:
    return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True)


def bad_input(message: str, type_: str) -> ApplicationError:
    return ApplicationError(message, type=type_, non_retryable=True)
