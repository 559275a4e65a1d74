"""The lab's Slurm side with real daemons: a controller and three compute nodes, each in its own
network namespace on one bridge, become idle with their GPUs, run `srun -N4`, shrink by one
drained node, and stop without leaving a process behind. A node with the wrong munge key never
joins. A compute node registers again with a controller that replaced the head node. Needs
root, slurm-wlm and munge (Makefile LAB_APT): without them the tests fail."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from images.slurm import SlurmRole, render_gres_conf, render_slurm_conf, slurmd_conf
from lab.fabric.system import alive, namespaces, netns_pids, stop_pids
from lab.slurm import GPU_DEVICE, SlurmLab

pytestmark = pytest.mark.asyncio(loop_scope="session")

PREFIX, SUBNET = "mpsl", "10.77.0"  # pinned: this module's namespaces and tenant subnet
SWITCH = f"{PREFIX}-sw"
HOSTS = [f"{PREFIX}-{i}" for i in range(1, 6)]  # four cluster nodes and an intruder
NAMES = ["lab-001", "lab-002", "lab-003", "lab-004"]
GPUS = ("a100", 8)
GPU_VAR = "SLURM_GPUS_ON_NODE"


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


def remove_network() -> None:
    """By PID (whatever still runs in our namespaces), then by name."""
    for netns in namespaces(PREFIX):
        stop_pids(netns_pids(netns))
        subprocess.run(["ip", "netns", "del", netns], check=False, timeout=10)


@pytest.fixture(scope="module")
def network() -> Iterator[list[str]]:
    """One netns per node, `eth0` a veth to a bridge in a switch netns (the fabric host's shape)."""
    remove_network()  # a crashed earlier run
    try:
        ip("netns", "add", SWITCH)
        ip("-n", SWITCH, "link", "add", "br0", "type", "bridge")
        ip("-n", SWITCH, "link", "set", "br0", "up")
        for i, netns in enumerate(HOSTS, 1):
            ip("netns", "add", netns)
            peer = f"v{i}"
            ip("link", "add", "eth0", "netns", netns, "type", "veth", "peer", peer, "netns", SWITCH)
            ip("-n", SWITCH, "link", "set", peer, "master", "br0", "up")
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", netns, "link", "set", "eth0", "up")
        yield HOSTS
    finally:
        remove_network()
    assert namespaces(PREFIX) == []


@pytest_asyncio.fixture(loop_scope="session")
async def lab(network: list[str], tmp_path: Path) -> AsyncIterator[SlurmLab]:
    lab = SlurmLab(tmp_path / "slurm", backoff=(0.5, 2.0))
    try:
        yield lab
    finally:
        await lab.stop_all()
        assert lab_pids(lab) == []
        assert [p for ns in network for p in netns_pids(ns)] == []
        assert munged_of(lab) == []
        lab.remove_runtime()


def lab_pids(lab: SlurmLab) -> list[int]:
    """The daemons recorded for a crash of the lab: none may be alive."""
    data = json.loads((lab.state_dir / "pids.json").read_text())
    return [pid for entries in data.values() for _, pid, _ in entries if alive(pid)]


def munged_of(lab: SlurmLab) -> list[int]:
    """munged runs in the host namespaces: find ours by the runtime dir in its command line."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(lab.runtime).encode() in cmdline and alive(int(pid)):
            found.append(int(pid))
    return found


def roles(cluster: str, key: bytes, count: int = 4) -> list[SlurmRole]:
    """What CreateCluster would put in the nodes' user-data: node 1 is the controller."""
    controller = f"{SUBNET}.11"
    names = NAMES[:count]
    common: dict[str, Any] = {
        "cluster": cluster,
        "controller": controller,
        "munge_key": key,
        "slurmd_conf": slurmd_conf(*GPUS),
        "gpus": GPUS[1],
        "gpu_type": GPUS[0],
    }
    ctl_files = {
        "slurm_conf": render_slurm_conf(cluster, names[0], controller),
        "gres_conf": render_gres_conf(*GPUS, GPU_DEVICE),
    }
    return [
        SlurmRole(
            role="controller" if i == 0 else "compute",
            node_name=name,
            address=f"{SUBNET}.{11 + i}/24",
            **common,
            **(ctl_files if i == 0 else {}),
        )
        for i, name in enumerate(names)
    ]


async def wait_nodes(lab: SlurmLab, cluster: str, names: list[str], timeout: float = 20) -> list:
    """Until exactly `names` are idle."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        nodes = await lab.nodes(cluster)
        if sorted(n["name"] for n in nodes) == names and all(n["state"] == "idle" for n in nodes):
            return nodes
        if asyncio.get_running_loop().time() > deadline:
            states = {n["name"]: (n["state"], n["reason"]) for n in nodes}
            logs = {h: lab.status(h).log_tail for h in HOSTS}
            pytest.fail(f"nodes {states}, wanted {names} idle; slurmd logs {logs}")
        await asyncio.sleep(0.05)


async def test_cluster_runs_jobs_and_shrinks(lab: SlurmLab) -> None:
    cluster = "mpsl-c1"
    ctl, *computes = roles(cluster, os.urandom(128))
    await lab.start(HOSTS[0], HOSTS[0], ctl)
    await asyncio.gather(*(lab.start(h, h, r) for h, r in zip(HOSTS[1:], computes, strict=False)))

    nodes = await wait_nodes(lab, cluster, NAMES)
    for n in nodes:
        assert "a100" in n["active_features"] and "metalplane" in n["active_features"]
        assert n["gres"] == "gpu:a100:8"
    hosts = (await lab.run(cluster, "srun", "-N4", "hostname")).split()
    assert sorted(hosts) == NAMES
    gpus = await lab.run(
        cluster, "srun", "-N4", "--gpus-per-node=8", "printenv", "SLURM_GPUS_ON_NODE"
    )
    assert gpus.split() == ["8"] * 4

    # Shrink: drain, stop its daemons, delete it from the controller.
    await lab.run(cluster, "scontrol", "update", "nodename=lab-004", "state=drain", "reason=shrink")
    (drained,) = [n for n in await lab.nodes(cluster) if n["name"] == "lab-004"]
    assert "DRAIN" in drained["state_flags"]
    pids = lab.status(HOSTS[3]).pids
    assert set(pids) == {"munged", "slurmd"}
    await lab.stop(HOSTS[3])
    await lab.stop(HOSTS[3])  # idempotent
    assert not any(alive(p) for p in pids.values())
    await lab.run(cluster, "scontrol", "delete", "nodename=lab-004")
    assert sorted(n["name"] for n in await lab.nodes(cluster)) == NAMES[:3]
    hosts = (await lab.run(cluster, "srun", "-N3", "hostname")).split()
    assert sorted(hosts) == NAMES[:3]

    status = lab.status(HOSTS[0])
    assert set(status.pids) == {"munged", "slurmctld", "slurmd"} and status.slurmd_exits == 0
    everything = [p for h in HOSTS for p in lab.status(h).pids.values()]
    await lab.stop_all()
    assert not any(alive(p) for p in everything)
    assert not any(lab.status(h).running for h in HOSTS)


async def test_wrong_munge_key_never_joins(lab: SlurmLab) -> None:
    cluster = "mpsl-c2"
    ctl, compute = roles(cluster, os.urandom(128), count=2)
    intruder = compute.model_copy(update={"munge_key": os.urandom(128)})
    await lab.start(HOSTS[0], HOSTS[0], ctl)
    await lab.start(HOSTS[4], HOSTS[4], intruder)

    # Its slurmd cannot fetch the configuration: it exits, and the lab restarts it.
    deadline = asyncio.get_running_loop().time() + 15
    while lab.status(HOSTS[4]).slurmd_exits < 2:
        assert asyncio.get_running_loop().time() < deadline, lab.status(HOSTS[4])
        await asyncio.sleep(0.05)
    status = lab.status(HOSTS[4])
    assert status.running and status.slurmd_last_exit != 0 and status.error is None
    await wait_nodes(lab, cluster, NAMES[:1])  # the controller's own slurmd only
    ctl_log = (lab.run_dir(HOSTS[0]) / "slurmctld.log").read_text()
    assert "Invalid credential" in ctl_log


async def test_computes_register_again_with_a_replaced_controller(lab: SlurmLab) -> None:
    """The head node goes after a compute node registered with it; the node that replaces it
    (same address, fresh state) knows no dynamic node until the compute's slurmd restarts."""
    cluster = "mpsl-c3"
    ctl, compute = roles(cluster, os.urandom(128), count=2)
    await lab.start(HOSTS[0], HOSTS[0], ctl)
    await lab.start(HOSTS[1], HOSTS[1], compute)
    await wait_nodes(lab, cluster, NAMES[:2])
    await lab.stop(HOSTS[0])
    conf = render_slurm_conf(cluster, NAMES[2], ctl.controller)
    replacement = ctl.model_copy(update={"node_name": NAMES[2], "slurm_conf": conf})
    await lab.start(HOSTS[2], HOSTS[2], replacement)
    await wait_nodes(lab, cluster, NAMES[1:3])
    assert lab.status(HOSTS[1]).slurmd_exits == 0  # restarted to register, not failed
