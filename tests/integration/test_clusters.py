"""Tenant clusters through the API, as a tenant would ask for them: real Slurm daemons (munged,
slurmctld, slurmd in each node's fabric host namespace) on nodes provisioned by the node
workflows and placed on the tenant's own VXLAN/EVPN network of a Linux + FRR fabric.

Twelve lab nodes: lab-001..004 have H100s, lab-005..008 H200s, lab-009..012 MI300Xs (node i
sits on leaf (i-1)%2+1, port (i-1)//2+1). Needs root, FRR, slurm-wlm and munge (the Makefile's
lab packages); without them the tests fail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, update

from drivers.kubernetes import KubeCluster
from inventory.models import Allocation, Cluster, ClusterMember, Network, Node
from lab.fabric import Fabric, FabricConfig
from tests.integration.test_events import sse_events
from tests.integration.test_fabric_network import eventually, switch_state
from tests.platform import Platform, Ports, running_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

PORTS = Ports(api=18235, lab_control=18335, redfish=18336, ipmi_base=19720)
PREFIX, MGMT = "mpcl", "172.31.248.0/24"  # pinned: this module's namespaces and subnet
LEAVES = ("leaf1", "leaf2")
NODES = 12
PROVISIONING = {"vlan": 10, "vni": 10010, "cidr": "192.168.100.0/24"}
H100, H200, MI300X = "H100 80GB HBM3", "H200 141GB HBM3e", "Instinct MI300X"
SCRATCH = {"server": "10.0.0.5", "path": "/export/scratch", "mount_point": "/scratch",
           "fstype": "nfs", "options": "vers=4.2,hard"}  # fmt: skip


def nic_port(index: int) -> tuple[str, str, str]:
    """(fabric host, leaf, port) of lab node `index`."""
    leaf, port = (index - 1) % 2 + 1, (index - 1) // 2 + 1
    return f"h{leaf}-{port}", f"leaf{leaf}", f"swp{port}"


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    config = FabricConfig(
        prefix=PREFIX, state_dir=tmp_path_factory.mktemp("fab"), mgmt_subnet=MGMT,
        hosts_per_leaf=NODES // 2,
    )  # fmt: skip
    lab = Fabric(config)
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str,
    temporal_address: str,
    tmp_path_factory: pytest.TempPathFactory,
    fabric: Fabric,
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_clusters", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("clusters"), ports=PORTS, nodes=NODES,
        protocols="redfish", lab_slurm=True,
        # Only a failing test waits out the ready timeout: long enough for a busy machine.
        extra_settings={"cluster_ready_timeout_seconds": 120, "cluster_max_replacements": 1},
    ) as running:  # fmt: skip
        await running.enroll_lab()
        async with running.api(running.mint("platform-admin")) as api:
            for leaf in LEAVES:
                access = fabric.access(leaf)
                enrolled = await api.post("/v1/switches", json={
                    "id": leaf, "role": "leaf", "nos": "linux-frr",
                    "mgmt_address": access.host, "username": access.username,
                    "password": access.password, "asn": access.asn,
                    "vtep_address": access.vtep, "routing": False,
                })  # fmt: skip
                assert enrolled.status_code == 201, enrolled.text
            reply = await api.put("/v1/fabric/provisioning-network", json=PROVISIONING)
            assert reply.status_code == 200, reply.text
            for tenant, quota in (("acme", 8), ("globex", 8), ("initech", 2)):
                created = await api.post("/v1/tenants", json={
                    "id": tenant, "display_name": tenant,
                    "quotas": {"nodes": quota, "gpus": quota * 8},
                })  # fmt: skip
                assert created.is_success, created.text
            for index in range(1, NODES + 1):
                node_id = f"lab-{index:03d}"
                host, leaf, port = nic_port(index)
                mac = (await api.get(f"/v1/nodes/{node_id}")).json()["macs"][0]
                fabric.host_exec(host, "ip", "link", "set", "dev", "eth0", "address", mac)
                cabled = await api.put(
                    f"/v1/nodes/{node_id}/cabling",
                    json={"links": [{"mac": mac, "switch": leaf, "port": port}]},
                )
                assert cabled.status_code == 200, cabled.text
                await running.lab_put(
                    f"/lab/nodes/{node_id}/netns", {"netns": fabric.host(host).netns}
                )
        yield running


def tenant_api(platform: Platform, tenant: str) -> httpx.AsyncClient:
    return platform.api(platform.mint("tenant-admin", tenant=tenant, subject=f"{tenant}-admin"))


async def wait_cluster(
    api: httpx.AsyncClient, cluster_id: str, states: set[str], timeout: float = 150
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            reply = await api.get(f"/v1/clusters/{cluster_id}")
            if reply.status_code == 404 and "gone" in states:
                return {}
            cluster = reply.json()
            if cluster.get("state") in states:
                return cluster
            await asyncio.sleep(0.3)


async def create(
    api: httpx.AsyncClient, name: str, count: int, gpu: str, *, expect: int = 201, **extra: Any
) -> dict[str, Any]:
    body = {"name": name, "kind": "slurm", "node_count": count, "gpu_model": gpu} | extra
    reply = await api.post("/v1/clusters", json={**body, "image": "lab-sim"})
    assert reply.status_code == expect, reply.text
    return reply.json()


async def progress(platform: Platform, tenant: str, cluster_id: str) -> list[str]:
    """The cluster's states as its tenant sees them on the event stream (replayed from the
    start, until it is ready or failed)."""
    token = platform.mint("tenant-admin", tenant=tenant, subject="watcher")
    headers = {"Authorization": f"Bearer {token}"}
    states: list[str] = []
    async with (
        httpx.AsyncClient(base_url=platform.api_url, timeout=30) as http,
        http.stream("GET", "/v1/events?kind=cluster&after=0", headers=headers) as stream,
    ):
        async with asyncio.timeout(30):
            async for event in sse_events(stream):
                data = json.loads(event["data"])
                if data["resource_id"] == cluster_id:
                    states.append(data["to_state"])
                    if data["to_state"] in ("ready", "failed"):
                        return states
    return states


async def delete(api: httpx.AsyncClient, cluster_id: str) -> None:
    assert (await api.delete(f"/v1/clusters/{cluster_id}")).status_code == 202
    await wait_cluster(api, cluster_id, {"gone"})


async def audit(platform: Platform) -> None:
    """No node, network value or member is held without a live cluster."""
    async with platform.sessions() as session:
        live = set((await session.scalars(select(Cluster.id))).all())
        held = (await session.execute(select(Node.id, Node.tenant_id, Node.cluster_id))).all()
        members = (await session.scalars(select(ClusterMember.cluster_id))).all()
        networks = (await session.scalars(select(Network.id).where(Network.kind == "tenant"))).all()
        values = set((await session.execute(select(Allocation.pool, Allocation.value))).all())
    assert [n for n in held if n.cluster_id is not None and n.cluster_id not in live] == []
    assert [n for n in held if n.tenant_id is not None and n.cluster_id is None] == []
    assert set(members) <= live
    if not live:
        assert networks == []
        assert values == {("vlan", PROVISIONING["vlan"]), ("l2vni", PROVISIONING["vni"])}


async def reboot_blocks_cluster_operations(
    platform: Platform, api: httpx.AsyncClient, cluster_id: str, node_id: str
) -> None:
    """An operator reboots a member (slow BMC: it stays rebooting a while): the cluster may
    neither shrink nor go until the node is active again."""
    await platform.set_faults(node_id, delay_seconds=1.0)
    try:
        async with platform.api() as ops:
            reply = await ops.post(f"/v1/nodes/{node_id}/reboot", json={"hard": True})
            assert reply.status_code == 202, reply.text

            async def rebooting() -> bool:
                return (await ops.get(f"/v1/nodes/{node_id}")).json()["state"] == "rebooting"

            await eventually(rebooting, 30)
        for refused in (
            await api.delete(f"/v1/clusters/{cluster_id}"),
            await api.patch(f"/v1/clusters/{cluster_id}", json={"node_count": 3}),
        ):
            assert refused.status_code == 409, refused.text
            assert refused.json()["type"].endswith("member-rebooting")
    finally:
        await platform.set_faults(node_id, delay_seconds=0.0)
    node = await platform.wait_state(node_id, {"active", "failed"})
    assert node["state"] == "active" and node["cluster_id"] == cluster_id, node["last_error"]


async def test_a_slurm_cluster_from_request_to_srun_and_back(
    platform: Platform, fabric: Fabric
) -> None:
    async with tenant_api(platform, "acme") as api:
        cluster = await create(api, "c1", 4, H100, storage_mounts=[SCRATCH])
        assert cluster["state"] == "creating" and len(cluster["members"]) == 4
        assert [m["role"] for m in cluster["members"]].count("controller") == 1
        cluster = await wait_cluster(api, cluster["id"], {"ready", "failed"})
        assert cluster["state"] == "ready", cluster["last_error"]
        assert await progress(platform, "acme", cluster["id"]) == ["creating", "ready"]
        head = next(m["node_id"] for m in cluster["members"] if m["role"] == "controller")
        hosts = (await platform.lab_slurm(head, "srun", "-N4", "hostname")).split()
        assert sorted(hosts) == ["lab-001", "lab-002", "lab-003", "lab-004"]
        nodes = {n["name"]: n for n in cluster["report"]["nodes"]}
        assert all(n["gres"] == "gpu:h100-80gb-hbm3:8" for n in nodes.values())
        async with platform.api() as ops:  # the storage, as each node reported it mounted
            facts = (await ops.get("/v1/nodes/lab-003")).json()["facts"]
            taken = await ops.post("/v1/nodes/lab-003/release")  # the cluster's, not the operator's
            assert taken.status_code == 409 and taken.json()["type"].endswith("node-in-cluster")
        assert facts["mounts"] == [
            {"source": "10.0.0.5:/export/scratch", "target": "/scratch", "fstype": "nfs"}
        ]
        await reboot_blocks_cluster_operations(platform, api, cluster["id"], "lab-004")
        # Slurm's traffic crossed the fabric: the nodes' ports on both leaves are in the
        # VLAN of the cluster's own network.
        network = (await api.get(f"/v1/networks/{cluster['network_id']}")).json()
        for leaf in LEAVES:
            ports = (await switch_state(fabric, leaf)).access_ports
            assert ports["swp1"] == ports["swp2"] == network["vlan"]
        await delete(api, cluster["id"])
        assert (await api.get(f"/v1/networks/{network['id']}")).status_code == 404
    for index in range(1, 5):
        node = await platform.wait_state(f"lab-{index:03d}", {"available"})
        assert node["tenant_id"] is None
        lab = await platform.lab_node(f"lab-{index:03d}")
        assert lab["power"] == "off" and not lab["cluster"]["running"]
    await audit(platform)


async def jobs(platform: Platform, head: str) -> list[dict[str, Any]]:
    return json.loads(await platform.lab_slurm(head, "squeue", "--json"))["jobs"]


async def test_scale_up_by_two_and_down_by_one_spares_running_jobs(platform: Platform) -> None:
    async with tenant_api(platform, "acme") as api:
        cluster = await create(api, "c2", 2, H200)
        cluster = await wait_cluster(api, cluster["id"], {"ready", "failed"})
        assert cluster["state"] == "ready", cluster["last_error"]
        url = f"/v1/clusters/{cluster['id']}"

        reply = await api.patch(url, json={"node_count": 4})
        assert reply.status_code == 202, reply.text
        assert reply.json()["state"] == "scaling" and len(reply.json()["members"]) == 4
        cluster = await wait_cluster(api, cluster["id"], {"ready", "failed"})
        assert cluster["state"] == "ready" and cluster["last_error"] is None, cluster
        names = sorted(m["hostname"] for m in cluster["members"])
        assert names == ["lab-005", "lab-006", "lab-007", "lab-008"]
        head = next(m["node_id"] for m in cluster["members"] if m["role"] == "controller")
        hosts = (await platform.lab_slurm(head, "srun", "-N4", "hostname")).split()
        assert sorted(hosts) == names

        # A job holds three nodes; scaling down by one must take the idle fourth.
        busy = [n for n in names if n != "lab-006"]
        submitted = await platform.lab_slurm(
            head, "sbatch", "-N3", f"--nodelist={','.join(busy)}", "--output=/dev/null",
            "--wrap", "sleep 300",
        )  # fmt: skip
        job_id = int(submitted.split()[-1])

        async def running() -> list[dict[str, Any]]:
            return [j for j in await jobs(platform, head) if j["job_id"] == job_id]

        async def started() -> bool:
            return any(j["job_state"] == "RUNNING" for j in await running())

        await eventually(started, 20)
        reply = await api.patch(url, json={"node_count": 3})
        assert reply.status_code == 202, reply.text
        cluster = await wait_cluster(api, cluster["id"], {"ready", "failed"})
        assert cluster["state"] == "ready" and cluster["last_error"] is None, cluster
        assert sorted(m["hostname"] for m in cluster["members"]) == busy
        assert cluster["node_count"] == 3
        (job,) = await running()
        assert job["job_state"] == "RUNNING"  # untouched by the removal
        sinfo = sorted(n["name"] for n in cluster["report"]["nodes"])
        assert sinfo == busy
        node = await platform.wait_state("lab-006", {"available"})
        assert node["tenant_id"] is None and node["cluster_id"] is None
        await platform.lab_slurm(head, "scancel", str(job_id))
        await delete(api, cluster["id"])
    await audit(platform)


async def test_a_kubernetes_cluster_with_its_gpu_runtime_scales_and_goes(
    platform: Platform,
) -> None:
    """Contract-tested: the control plane is the kmock emulator (lab/kube.py); the nodes'
    kubeadm configurations are checked by the lab, the head node drives it with the client."""
    async with tenant_api(platform, "acme") as api:
        made = await api.post("/v1/networks", json={"name": "lan", "cidr": "10.77.0.0/24"})
        assert made.status_code == 201, made.text
        network = f"/v1/networks/{made.json()['id']}"

        async def network_ready() -> bool:
            return (await api.get(network)).json()["state"] == "ready"

        await eventually(network_ready, 60)
        cluster = await create(
            api, "k1", 2, H200, kind="kubernetes", network=made.json()["id"]
        )  # the tenant's own network: the cluster uses it and leaves it
        assert not cluster["network_owned"]
        assert {m["address"] for m in cluster["members"]} == {"10.77.0.10/24", "10.77.0.11/24"}
        cluster = await wait_cluster(api, cluster["id"], {"ready", "failed"})
        assert cluster["state"] == "ready", cluster["last_error"]
        head = next(m["node_id"] for m in cluster["members"] if m["role"] == "controller")
        kube = KubeCluster((await platform.lab_node(head))["cluster"]["kube_api"])
        try:
            nodes = {n.name: n for n in await kube.nodes("nvidia.com/gpu")}
            assert sorted(nodes) == sorted(m["hostname"] for m in cluster["members"])
            assert all(n.ready and n.gpus == 8 for n in nodes.values())
            assert {n.labels["metalplane.io/cluster"] for n in nodes.values()} == {"k1"}
            assert await kube.gpu_runtime_ready("nvidia")  # the ClusterPolicy it applied
            assert {n["state"] for n in cluster["report"]["nodes"]} == {"ready"}

            url = f"/v1/clusters/{cluster['id']}"
            for count in (3, 2):
                reply = await api.patch(url, json={"node_count": count})
                assert reply.status_code == 202, reply.text
                cluster = await wait_cluster(api, cluster["id"], {"ready", "failed"})
                assert cluster["state"] == "ready" and cluster["last_error"] is None, cluster
                names = sorted(m["hostname"] for m in cluster["members"])
                assert sorted(n.name for n in await kube.nodes("nvidia.com/gpu")) == names
                assert len(names) == count
        finally:
            kube.close()
        await delete(api, cluster["id"])
        assert (await api.get(network)).json()["state"] == "ready"  # not the cluster's to delete
        assert (await api.delete(network)).status_code == 202

        async def network_gone() -> bool:
            return (await api.get(network)).status_code == 404

        await eventually(network_gone, 60)
    for index in range(5, 9):
        await platform.wait_state(f"lab-{index:03d}", {"available"})
    await audit(platform)


async def test_a_failed_node_is_replaced_and_without_spares_the_cluster_unwinds(
    platform: Platform,
) -> None:
    async def break_node(node_id: str, args: list[str]) -> None:
        async with platform.sessions.begin() as session:
            await session.execute(
                update(Node).where(Node.id == node_id).values(extra_kernel_args=args)
            )

    await break_node("lab-009", ["iommu=off"])  # its tuning verification fails
    async with tenant_api(platform, "globex") as api:
        cluster = await create(api, "c1", 2, MI300X)
        assert "lab-009" in {m["node_id"] for m in cluster["members"]}
        cluster = await wait_cluster(api, cluster["id"], {"ready", "failed"})
        assert cluster["state"] == "ready", cluster["last_error"]
        members = {m["node_id"]: m for m in cluster["members"]}
        assert "lab-009" not in members
        (stand_in,) = [m for m in members.values() if m["replaces"] == "lab-009"]
        failed = await platform.wait_state("lab-009", {"failed"})
        assert "iommu" in failed["last_error"] and failed["tenant_id"] is None
        head = next(m["node_id"] for m in members.values() if m["role"] == "controller")
        hosts = (await platform.lab_slurm(head, "srun", "-N2", "hostname")).split()
        assert sorted(hosts) == sorted(members) and stand_in["node_id"] in hosts
        await delete(api, cluster["id"])

        # Three nodes from the three free ones, one of which fails: no spare is left.
        await break_node("lab-011", ["iommu=off"])
        cluster = await create(api, "c2", 3, MI300X)
        cluster = await wait_cluster(api, cluster["id"], {"ready", "failed"})
        assert cluster["state"] == "failed"
        assert "lab-011" in cluster["last_error"] and "replacement" in cluster["last_error"]
        assert cluster["members"] == [] and cluster["network_id"] is None
        await audit(platform)
        await delete(api, cluster["id"])
    for node_id in ("lab-009", "lab-011"):
        await break_node(node_id, [])
    await audit(platform)


async def test_cancelling_a_creation_unwinds_it(platform: Platform) -> None:
    async with tenant_api(platform, "acme") as api:
        cluster = await create(api, "c3", 4, H100)

        async def provisioning() -> bool:  # mid-creation: nodes are being provisioned
            async with platform.api() as ops:
                return (await ops.get("/v1/nodes/lab-001")).json()["state"] == "provisioning"

        await eventually(provisioning, 60)
        assert (await api.delete(f"/v1/clusters/{cluster['id']}")).status_code == 202
        await wait_cluster(api, cluster["id"], {"gone"})
    for index in range(1, 5):
        await platform.wait_state(f"lab-{index:03d}", {"available"})
    await audit(platform)


async def test_admission_refuses_at_once_and_allocates_nothing(platform: Platform) -> None:
    async with tenant_api(platform, "acme") as acme, tenant_api(platform, "globex") as globex:
        body = {"kind": "slurm", "node_count": 4, "gpu_model": H100, "image": "lab-sim"}
        replies = await asyncio.gather(
            acme.post("/v1/clusters", json={**body, "name": "race"}),
            globex.post("/v1/clusters", json={**body, "name": "race"}),
        )
        codes = sorted(r.status_code for r in replies)
        assert codes == [201, 409], [r.text for r in replies]
        (lost,) = [r for r in replies if r.status_code == 409]
        assert lost.json()["type"].endswith("insufficient-capacity")
        (won,) = [r for r in replies if r.status_code == 201]
        winner = acme if won.json()["tenant_id"] == "acme" else globex
        await delete(winner, won.json()["id"])

    async with tenant_api(platform, "initech") as api:  # quota: 2 nodes
        before = await platform.lab_nodes()
        reply = await api.post("/v1/clusters", json={**body, "name": "big", "node_count": 3})
        assert reply.status_code == 409 and reply.json()["type"].endswith("quota-exceeded")
        for bad, status in (
            ({"image": "no-such-image"}, 422),
            ({"kind": "openstack"}, 422),
            ({"network": "00000000-0000-0000-0000-000000000001"}, 404),
            ({"node_count": 0}, 422),
            ({"storage_mounts": [{**SCRATCH, "mount_point": "/etc"}]}, 422),
        ):
            reply = await api.post("/v1/clusters", json={**body, "name": "bad", **bad})
            assert reply.status_code == status, (bad, reply.text)
            assert reply.headers["content-type"].startswith("application/problem+json")
        assert (await api.get("/v1/clusters")).json()["items"] == []
        assert (await api.get("/v1/networks")).json()["items"] == []
        assert await platform.lab_nodes() == before
    await audit(platform)
