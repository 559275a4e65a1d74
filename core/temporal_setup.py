"""Make a Temporal namespace ready for metalplane: the namespace and its search attributes.

The dev server gets the search attributes on its command line; an external cluster (or a test's
own namespace) gets them here. Upserting an unregistered attribute would hang a workflow.
"""

from __future__ import annotations

import asyncio

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from core.contracts import SEARCH_ATTRIBUTES


async def ensure_namespace(client: Client, namespace: str, retention_days: int = 7) -> None:
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace)
        )
        return
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                workflow_execution_retention_period=Duration(seconds=retention_days * 86400),
            )
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    # A new namespace takes a moment to be visible to every service of the cluster.
    for _ in range(100):
        try:
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace)
            )
            return
        except RPCError:
            await asyncio.sleep(0.1)


async def ensure_search_attributes(client: Client, namespace: str, timeout: float = 30) -> None:
    # A namespace registered a moment ago may not have reached every service's cache yet.
    async with asyncio.timeout(timeout):
        while True:
            try:
                existing = await client.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace=namespace)
                )
                break
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                await asyncio.sleep(0.25)
    missing = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
        )
