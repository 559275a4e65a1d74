"""Inventory errors the API and activities turn into 4xx answers or non-retryable failures."""

from __future__ import annotations


class InventoryError(Exception):
    pass


class NodeNotFound(InventoryError):
    def __init__(self, node_id: str) -> None:
        super().__init__(f"node {node_id!r} does not exist")
        self.node_id = node_id


class NodeConflict(InventoryError):
    """The node exists but is not in a state the operation may start from, or is held by
    another operation, or an enrolled identifier (id, MAC) is already taken."""


class NodeNeedsCleaning(NodeConflict):
    """The node may hold a tenant's data: only a verified clean makes it available."""
