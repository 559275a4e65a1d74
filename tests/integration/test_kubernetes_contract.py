"""The Kubernetes side of tenant clusters against the kmock emulator (no kube-apiserver, kubelet
or kubeadm can run here: this is a contract test of our side). The lab's stand-in for kubeadm
checks the configurations metalplane renders as kubeadm would; the head node's driver
(drivers/kubernetes, the official client) reads nodes, applies the GPU runtime, cordons, drains
and deletes through the emulated API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from drivers.kubernetes import KubeCluster, KubeError
from images.kubeadm import (
    KubeadmCluster,
    bootstrap_token,
    ca_cert_hash,
    new_ca,
    render_init,
    render_join,
)
from lab.kube import KubeLab, KubeLabError
from tests.integration.test_fabric_network import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEAD = "10.60.0.10"
LABELS = {"metalplane.io/cluster": "k1", "metalplane.io/gpu": "h100-80gb-hbm3"}


@pytest_asyncio.fixture(loop_scope="session")
async def lab() -> AsyncIterator[KubeLab]:
    kube = KubeLab()
    yield kube
    await kube.close()


def configs(token: str | None = None) -> tuple[KubeadmCluster, bytes, bytes]:
    ca = new_ca("k1")
    cluster = KubeadmCluster("k1", HEAD, token or bootstrap_token(), ca_cert_hash(ca.cert_pem))
    return cluster, ca.cert_pem, ca.key_pem


async def init(lab: KubeLab, cluster: KubeadmCluster, cert: bytes, key: bytes, vendor: str) -> str:
    resource = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}[vendor]
    config = render_init(cluster, "lab-001", LABELS)
    return await lab.init(
        "k1", node_name="lab-001", address=f"{HEAD}/24", config=config,
        ca_cert=cert, ca_key=key, gpus=8, gpu_vendor=vendor, gpu_resource=resource,
    )  # fmt: skip


async def join(lab: KubeLab, cluster: KubeadmCluster) -> None:
    config = render_join(cluster, "lab-002", {})
    await lab.join("k1", node_name="lab-002", config=config, gpus=8)


async def test_nvidia_cluster_bootstraps_advertises_gpus_and_removes_a_node(lab: KubeLab) -> None:
    cluster, cert, key = configs()
    url = await init(lab, cluster, cert, key, "nvidia")
    for name in ("lab-002", "lab-003"):
        await lab.join("k1", node_name=name, config=render_join(cluster, name, LABELS), gpus=8)
    api = KubeCluster(url)
    try:
        nodes = {n.name: n for n in await api.nodes("nvidia.com/gpu")}
        assert sorted(nodes) == ["lab-001", "lab-002", "lab-003"]
        assert all(n.ready and n.gpus == 0 for n in nodes.values())  # no runtime yet
        assert nodes["lab-002"].labels["metalplane.io/cluster"] == "k1"
        with pytest.raises(KubeError, match="404"):  # no ClusterPolicy yet
            await api.gpu_runtime_ready("nvidia")

        await api.ensure_gpu_runtime("nvidia")
        await api.ensure_gpu_runtime("nvidia")  # twice: no second ClusterPolicy, no error

        async def advertised() -> bool:
            found = await api.nodes("nvidia.com/gpu")
            return all(n.gpus == 8 for n in found) and await api.gpu_runtime_ready("nvidia")

        await eventually(advertised, 10)

        await api.cordon("lab-003")
        assert {n.name: n.unschedulable for n in await api.nodes("nvidia.com/gpu")}["lab-003"]
        assert await api.drain("lab-003") == 0  # no pods: no kubelet runs any here
        await api.delete_node("lab-003")
        await api.delete_node("lab-003")  # gone already: fine
        assert sorted(n.name for n in await api.nodes("nvidia.com/gpu")) == ["lab-001", "lab-002"]

        await lab.leave("k1", "lab-002")  # powered off: its kubelet stops, NotReady
        ready = {n.name: n.ready for n in await api.nodes("nvidia.com/gpu")}
        assert ready == {"lab-001": True, "lab-002": False}
    finally:
        api.close()


async def test_amd_gpus_come_from_the_device_plugin_daemonset(lab: KubeLab) -> None:
    cluster, cert, key = configs()
    url = await init(lab, cluster, cert, key, "amd")
    api = KubeCluster(url)
    try:
        await api.ensure_gpu_runtime("amd")

        async def advertised() -> bool:
            found = await api.nodes("amd.com/gpu")
            return [n.gpus for n in found] == [8] and await api.gpu_runtime_ready("amd")

        await eventually(advertised, 10)
    finally:
        api.close()


async def test_kubeadm_refuses_configurations_that_do_not_match_the_cluster(lab: KubeLab) -> None:
    cluster, cert, key = configs()
    other_cert = new_ca("other").cert_pem
    with pytest.raises(KubeLabError, match="CA key does not match"):
        await init(lab, cluster, other_cert, key, "nvidia")
    moved = KubeadmCluster("k1", "10.60.0.99", cluster.token, cluster.ca_hash)
    with pytest.raises(KubeLabError, match=r"advertiseAddress|controlPlaneEndpoint"):
        await init(lab, moved, cert, key, "nvidia")

    with pytest.raises(KubeLabError, match="does not answer"):  # before the head node's init
        await lab.join(
            "k1", node_name="lab-002", config=render_join(cluster, "lab-002", {}), gpus=8
        )
    await init(lab, cluster, cert, key, "nvidia")
    bad = {
        "token is not the cluster's": KubeadmCluster(
            "k1", HEAD, bootstrap_token(), cluster.ca_hash
        ),
        "CA hash": KubeadmCluster("k1", HEAD, cluster.token, ca_cert_hash(other_cert)),
        "apiServerEndpoint": KubeadmCluster("k1", "10.60.0.11", cluster.token, cluster.ca_hash),
    }
    for why, wrong in bad.items():
        with pytest.raises(KubeLabError, match=why):
            await lab.join(
                "k1", node_name="lab-002", config=render_join(wrong, "lab-002", {}), gpus=8
            )
    await lab.join("k1", node_name="lab-002", config=render_join(cluster, "lab-002", {}), gpus=8)
