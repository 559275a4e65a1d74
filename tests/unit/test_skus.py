"""SKUs: the catalog, the match of a node enrolled without one, and every difference the
check names; the inspection's activity on a real PostgreSQL, run twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import images
from activities.inventory import (
    ClaimCommission,
    InventoryActivities,
    RecordInspection,
    _memtest,
)
from core.facts import BurnIn, Disk, Gpu, HardwareRecord, Nic, NodeFacts, ToolRun
from inventory import nodes, skus
from inventory.models import BootSession, Event
from tests.db import migrated_sessions
from tests.unit.test_inventory import new_node

GIB = 2**30


def h100_server(**changes: object) -> HardwareRecord:
    record = HardwareRecord(
        cpus=224,
        memory_bytes=2047 * GIB,
        disks=[Disk(device=f"/dev/nvme{i}n1", size_bytes=3840 * 10**9) for i in range(2)],
        nics=[Nic(name=f"eth{i}", mac=f"02:00:00:00:00:0{i}") for i in range(2)],
        gpus=[Gpu(vendor="NVIDIA", model="H100 80GB HBM3") for _ in range(8)],
        bios_version="lab-2.1",
    )
    return record.model_copy(update=changes)


def test_the_lab_catalog_loads_and_matches_a_node_by_its_gpu() -> None:
    assert set(skus.catalog()) >= {"lab-h100x8", "lab-qemu-vm"}
    assert skus.match("Dell Inc.", "PowerEdge XE9680", "H100 80GB HBM3").name == "lab-h100x8"
    assert skus.match("Dell Inc.", "PowerEdge XE9680", "B200") is None
    with pytest.raises(skus.UnknownSku):
        skus.get("no-such-sku")


def test_a_skus_clean_steps_must_wipe_and_default_to_wipe_inspect_burn_in() -> None:
    assert skus.get("lab-qemu-vm").clean_steps == ["erase_disks", "inspect", "burn_in"]
    assert skus.clean_steps(None) == skus.clean_steps("gone") == list(skus.DEFAULT_CLEAN_STEPS)
    base = {"name": "x", "memory_gib_min": 1}
    assert skus.Sku.model_validate({**base, "clean_steps": ["burn_in", "erase_disks"]})
    for steps in (["inspect", "burn_in"], ["erase_disks", "erase_disks"], ["defrag"]):
        with pytest.raises(ValueError):
            skus.Sku.model_validate({**base, "clean_steps": steps})


def test_a_matching_server_has_no_differences_and_each_lack_is_named() -> None:
    sku = skus.get("lab-h100x8")
    assert skus.differences(sku, h100_server()) == []
    lacking = h100_server(
        memory_bytes=1000 * GIB,
        cpus=56,
        gpus=[Gpu(vendor="NVIDIA", model=m) for m in ["H100 80GB HBM3"] * 6 + ["A100"]],
        disks=[Disk(device="/dev/nvme0n1", size_bytes=3840 * 10**9)],
        nics=[],
    )  # fmt: skip
    assert skus.differences(sku, lacking) == [
        "memory: SKU lab-h100x8 needs 2000 GiB, found 1000.0 GiB",
        "CPUs: SKU lab-h100x8 needs 112, found 56",
        "GPUs: SKU lab-h100x8 has 8, found 7",
        "GPU model: SKU lab-h100x8 has H100 80GB HBM3, found A100",
        "disks: SKU lab-h100x8 has 2 of at least 3500 GiB, found 1",
        "NICs: SKU lab-h100x8 has 2, found 0",
    ]
    pinned = sku.model_copy(update={"bios_version": "2.3.0"})
    assert skus.differences(pinned, h100_server()) == [
        "BIOS firmware: SKU lab-h100x8 wants 2.3.0, found lab-2.1"
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, "t_skus_unit") as sessions:
        yield sessions


@pytest.mark.asyncio(loop_scope="session")
async def test_the_inspection_activities_run_twice_change_nothing_the_second_time(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    images.materialize_lab_artifacts(tmp_path)
    acts = InventoryActivities(
        sessions, store=images.ImageStore(tmp_path), boot_session_ttl=timedelta(minutes=5)
    )
    wid, session_id = "node/n-sku", str(uuid.uuid4())
    async with sessions.begin() as s:
        node = new_node("n-sku", "02:00:00:00:08:01")
        node.gpu_model, node.gpu_count = "H100 80GB HBM3", 8
        await nodes.enroll(s, node)
    claims = [await acts.claim_node_for_commission(ClaimCommission("n-sku", wid, session_id))]
    claims.append(await acts.claim_node_for_commission(ClaimCommission("n-sku", wid, session_id)))
    assert claims[0] == claims[1]
    facts = {"kernel_cmdline": "x", "hardware": h100_server().model_dump(mode="json")}
    record = RecordInspection("n-sku", wid, session_id, facts)
    assert await acts.record_inspection(record) == []
    assert await acts.record_inspection(record) == []
    async with sessions() as s:
        boots = list(await s.scalars(select(BootSession).where(BootSession.node_id == "n-sku")))
        inspected = await s.scalar(
            select(func.count()).where(Event.reason.like("inspected:%"), Event.workflow_id == wid)
        )
        stored = await nodes.get(s, "n-sku")
    assert [(b.task, b.closed_at is not None) for b in boots] == [("inspect", True)]
    assert inspected == 1
    assert stored.sku == "lab-h100x8" and stored.hardware["cpus"] == 224


def test_the_burn_ins_memory_test_is_judged_by_memtesters_exit_code() -> None:
    def facts(code: int) -> NodeFacts:
        run = ToolRun(tool="memtester", command="memtester 4M 1", exit_code=code,
                      output="Bit Flip : testing  12FAILURE: 0x00000001 != 0x00000003")  # fmt: skip
        return NodeFacts(kernel_cmdline="x", burn_in=BurnIn(memtest=run))

    assert _memtest(facts(0)) == ("memory test (memtester 4M 1) passed", [])
    assert _memtest(facts(4))[1] == [
        "memory test (memtester 4M 1) exited 4: Bit Flip : testing  12FAILURE: 0x00000001 !="
        " 0x00000003"
    ]
    assert _memtest(NodeFacts(kernel_cmdline="x"))[0] == "no memory test run by the agent"
