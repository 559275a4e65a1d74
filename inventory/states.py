"""Node lifecycle states and which operation may move a node out of which state."""

from __future__ import annotations

from enum import StrEnum


class NodeState(StrEnum):
    AVAILABLE = "available"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    REBOOTING = "rebooting"
    CLEANING = "cleaning"
    FAILED = "failed"
    MAINTENANCE = "maintenance"


# A new operation may claim a node only from these states (checked in the UPDATE's WHERE clause).
PROVISION_FROM = (NodeState.AVAILABLE, NodeState.FAILED)
RELEASE_FROM = (NodeState.ACTIVE, NodeState.FAILED, NodeState.AVAILABLE, NodeState.PROVISIONING)
REBOOT_FROM = (NodeState.ACTIVE,)
