"""Kubernetes for lab nodes, as far as it can go here: no kubeadm, kubelet or kube-apiserver can
run on this machine, so the control plane `kubeadm init` would start on the head node is the
kmock emulator (an in-memory Kubernetes API over HTTP, on 127.0.0.1 in the lab process), and the
lab plays the nodes' kubelets (a Node registers Ready with its labels) and the GPU runtime (the
GPU Operator or device plugin advertises the node's GPUs once its ClusterPolicy or DaemonSet
exists). What is real: the kubeadm configurations a node got are checked as kubeadm would
(token, endpoints, the CA's hash and key), and the head node's agent drives the emulator with
the official Kubernetes client (drivers/kubernetes)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kmock
import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from drivers.kubernetes.cluster import CLUSTER_POLICY, PLUGIN_NAMESPACE, PLUGINS
from images.kubeadm import API_SERVER_PORT, TOKEN, ca_cert_hash

log = logging.getLogger(__name__)
OPERATOR_INTERVAL = 0.5


class KubeLabError(RuntimeError):
    pass


@dataclass
class _ControlPlane:
    url: str
    endpoint: str
    token: str
    ca_hash: str
    gpu_vendor: str | None
    gpu_resource: str | None
    stop: asyncio.Event
    task: asyncio.Task[None]
    gpus: dict[str, int] = field(default_factory=dict)  # node -> GPUs its device plugin finds
    operator: asyncio.Task[None] | None = None


def _documents(text: str, what: str) -> dict[str, dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise KubeLabError(f"{what}: not YAML: {exc}") from exc
    return {str(d.get("kind")): d for d in docs}


def _labels(registration: dict[str, Any]) -> dict[str, str]:
    for arg in registration.get("kubeletExtraArgs") or []:
        if arg.get("name") == "node-labels":
            pairs = [p.split("=", 1) for p in str(arg.get("value", "")).split(",") if p]
            return {k: v for k, v in pairs}
    return {}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise KubeLabError(message)


def _same_key(cert_pem: bytes, key_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


class KubeLab:
    """The control planes of the lab's Kubernetes clusters, by cluster key."""

    def __init__(self) -> None:
        self._planes: dict[str, _ControlPlane] = {}

    def url(self, cluster: str) -> str | None:
        plane = self._planes.get(cluster)
        return plane.url if plane else None

    async def init(
        self, cluster: str, *, node_name: str, address: str, config: str,
        ca_cert: bytes, ca_key: bytes, gpus: int, gpu_vendor: str | None,
        gpu_resource: str | None,
    ) -> str:  # fmt: skip
        """`kubeadm init --config`: check it, start the API server, register the head node."""
        docs = _documents(config, "InitConfiguration")
        init, cluster_config = docs.get("InitConfiguration"), docs.get("ClusterConfiguration")
        _check(init is not None and cluster_config is not None, "no Init/ClusterConfiguration")
        assert init is not None and cluster_config is not None
        ip = str(ipaddress.ip_interface(address).ip)
        endpoint = f"{ip}:{API_SERVER_PORT}"
        tokens = init.get("bootstrapTokens") or [{}]
        token = str(tokens[0].get("token", ""))
        _check(bool(TOKEN.fullmatch(token)), "the bootstrap token is malformed")
        _check(cluster_config.get("controlPlaneEndpoint") == endpoint, "wrong controlPlaneEndpoint")
        advertised = (init.get("localAPIEndpoint") or {}).get("advertiseAddress")
        _check(advertised == ip, f"advertiseAddress {advertised} is not the node's {ip}")
        registration = init.get("nodeRegistration") or {}
        _check(registration.get("name") == node_name, "nodeRegistration.name is not the node's")
        _check(_same_key(ca_cert, ca_key), "the CA key does not match the CA certificate")
        await self.shutdown(cluster)
        url, stop, started = await self._serve()
        plane = _ControlPlane(
            url=url, endpoint=endpoint, token=token, ca_hash=ca_cert_hash(ca_cert),
            gpu_vendor=gpu_vendor, gpu_resource=gpu_resource, stop=stop, task=started,
        )  # fmt: skip
        self._planes[cluster] = plane
        if gpu_vendor == "nvidia":  # what the GPU Operator's chart installs
            await asyncio.to_thread(_create_cluster_policy_crd, url)
        plane.operator = asyncio.create_task(self._operate(plane))
        await self._register(plane, node_name, _labels(registration), gpus)
        return url

    async def join(self, cluster: str, *, node_name: str, config: str, gpus: int) -> None:
        """`kubeadm join --config`: the head node's API must answer, the token and the pinned
        CA hash must be the cluster's."""
        plane = self._planes.get(cluster)
        if plane is None:
            raise KubeLabError("the control plane does not answer (yet)")
        join = _documents(config, "JoinConfiguration").get("JoinConfiguration")
        _check(join is not None, "no JoinConfiguration")
        assert join is not None
        discovery = (join.get("discovery") or {}).get("bootstrapToken") or {}
        _check(discovery.get("apiServerEndpoint") == plane.endpoint, "wrong apiServerEndpoint")
        _check(discovery.get("token") == plane.token, "the bootstrap token is not the cluster's")
        _check(plane.ca_hash in (discovery.get("caCertHashes") or []), "CA hash mismatch")
        _check(discovery.get("unsafeSkipCAVerification") is False, "CA verification skipped")
        registration = join.get("nodeRegistration") or {}
        _check(registration.get("name") == node_name, "nodeRegistration.name is not the node's")
        await self._register(plane, node_name, _labels(registration), gpus)

    async def leave(self, cluster: str, node_name: str) -> None:
        """The node powered off: its kubelet stops posting, the node goes NotReady."""
        plane = self._planes.get(cluster)
        if plane is None:
            return
        plane.gpus.pop(node_name, None)
        status = {"status": {"conditions": [_ready(False)]}}
        with contextlib.suppress(ApiException):
            await self._core(plane, lambda core: core.patch_node_status(node_name, status))

    async def shutdown(self, cluster: str) -> None:
        plane = self._planes.pop(cluster, None)
        if plane is not None:
            plane.stop.set()
            if plane.operator is not None:
                await plane.operator
            await plane.task

    async def close(self) -> None:
        for cluster in list(self._planes):
            await self.shutdown(cluster)

    # -- the emulated API server, kubelets and GPU runtime ---------------------------------------
    async def _serve(self) -> tuple[str, asyncio.Event, asyncio.Task[None]]:
        stop, ready = asyncio.Event(), asyncio.get_running_loop().create_future()

        async def serve() -> None:
            async with kmock.KubernetesEmulator() as k8s, kmock.Server(k8s) as server:
                k8s.resources.load_bundled()
                _as_an_api_server(k8s)
                ready.set_result(str(server.url).rstrip("/"))
                await stop.wait()

        task = asyncio.create_task(serve())
        url = await asyncio.wait_for(ready, 10)
        return url, stop, task

    async def _core(self, plane: _ControlPlane, call: Callable[[client.CoreV1Api], Any]) -> Any:
        def run() -> Any:
            config = client.Configuration()
            config.host = plane.url
            with client.ApiClient(config) as api:
                return call(client.CoreV1Api(api))

        return await asyncio.to_thread(run)

    async def _register(
        self, plane: _ControlPlane, name: str, labels: dict[str, str], gpus: int
    ) -> None:
        """The node's kubelet registers it, Ready (replacing a registration of an earlier boot)."""
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {**labels, "kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"conditions": [_ready(True)],
                       "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"}},
        }  # fmt: skip
        with contextlib.suppress(ApiException):
            await self._core(plane, lambda core: core.delete_node(name))
        await self._core(plane, lambda core: core.create_node(node))
        plane.gpus[name] = gpus

    async def _operate(self, plane: _ControlPlane) -> None:
        """The GPU runtime: once the head node applied it, every registered node advertises its
        GPUs, and the runtime reports ready."""
        while not plane.stop.is_set():
            # The server stops with the same event: a call in flight then finds it gone.
            with contextlib.suppress(ApiException, OSError, urllib3.exceptions.HTTPError):
                if plane.gpu_vendor and plane.gpu_resource and await self._runtime(plane):
                    for name, count in list(plane.gpus.items()):
                        quantity = {plane.gpu_resource: str(count)}
                        body = {"status": {"capacity": quantity, "allocatable": quantity}}
                        await self._core(
                            plane, lambda core, n=name, b=body: core.patch_node_status(n, b)
                        )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(plane.stop.wait(), OPERATOR_INTERVAL)

    async def _runtime(self, plane: _ControlPlane) -> bool:
        """Whether the head node applied the runtime; marks it ready as its controller would."""

        def run() -> bool:
            config = client.Configuration()
            config.host = plane.url
            with client.ApiClient(config) as api:
                if plane.gpu_vendor == "nvidia":
                    group, version, plural, name = CLUSTER_POLICY
                    custom = client.CustomObjectsApi(api)
                    try:
                        custom.get_cluster_custom_object(group, version, plural, name)
                    except ApiException:
                        return False
                    custom.patch_cluster_custom_object_status(
                        group, version, plural, name, {"status": {"state": "ready"}}
                    )
                    return True
                name, _ = PLUGINS[str(plane.gpu_vendor)]
                apps = client.AppsV1Api(api)
                try:
                    apps.read_namespaced_daemon_set(name, PLUGIN_NAMESPACE)
                except ApiException:
                    return False
                count = len(plane.gpus)
                numbers = ("desiredNumberScheduled", "currentNumberScheduled", "numberReady")
                status = {"status": {**dict.fromkeys(numbers, count), "numberMisscheduled": 0}}
                apps.patch_namespaced_daemon_set_status(name, PLUGIN_NAMESPACE, status)
                return True

        return await asyncio.to_thread(run)


def _ready(ready: bool) -> dict[str, str]:
    return {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady"}


def _as_an_api_server(k8s: Any) -> None:
    """Two behaviours of a real API server the emulator lacks: a create answers 201 (the
    client maps only 201 for custom objects), and a CRD's resource becomes discoverable."""

    def on_crd(request: Any) -> Any:
        spec = request.data["spec"]
        for version in spec["versions"]:
            k8s.resources[f"{spec['group']}/{version['name']}/{spec['names']['plural']}"] = (
                kmock.ResourceInfo(
                    kind=spec["names"]["kind"], singular=spec["names"].get("singular"),
                    namespaced=spec["scope"] == "Namespaced",
                    verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
                    subresources={"status"} if "status" in (version.get("subresources") or {})
                    else set(),
                )
            )  # fmt: skip
        return request.data

    k8s["post /apis/apiextensions.k8s.io/v1/customresourcedefinitions"] << 201 << on_crd
    k8s[kmock.action.CREATE] << 201 << (lambda request: request.data)


def _create_cluster_policy_crd(url: str) -> None:
    group, version, plural, _ = CLUSTER_POLICY
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": "Cluster",
            "names": {"plural": plural, "singular": "clusterpolicy", "kind": "ClusterPolicy"},
            "versions": [{
                "name": version, "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    }  # fmt: skip
    config = client.Configuration()
    config.host = url
    with client.ApiClient(config) as api:
        client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
