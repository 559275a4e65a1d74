"""A Kubernetes cluster through the official Python client (blocking: run in threads): its
nodes as a cluster report carries them, cordon, drain and delete, and the GPU runtime: the
NVIDIA GPU Operator's ClusterPolicy, or the AMD or Intel device plugin's DaemonSet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

T = TypeVar("T")

# The extended resource each vendor's device plugin advertises.
GPU_RESOURCES = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "intel": "gpu.intel.com/i915"}
CLUSTER_POLICY = ("nvidia.com", "v1", "clusterpolicies", "cluster-policy")
PLUGIN_NAMESPACE = "kube-system"
# The device plugins' own DaemonSets (ROCm/k8s-device-plugin, intel-device-plugins-for-kubernetes).
PLUGINS = {
    "amd": ("amdgpu-device-plugin-daemonset", "rocm/k8s-device-plugin:latest"),
    "intel": ("intel-gpu-plugin", "intel/intel-gpu-plugin:latest"),
}


class KubeError(RuntimeError):
    pass


@dataclass(frozen=True)
class KubeNode:
    name: str
    ready: bool
    unschedulable: bool
    gpus: int  # allocatable GPUs of the vendor's resource
    labels: dict[str, str] = field(default_factory=dict)


def _gpus(quantities: dict[str, str] | None, resource: str) -> int:
    try:
        return int((quantities or {}).get(resource, "0"))
    except ValueError:
        return 0


class KubeCluster:
    """One cluster's API server. `token`/`ca_cert`: how the head node authenticates (none
    against a local emulator)."""

    def __init__(self, host: str, *, token: str | None = None, ca_file: str | None = None) -> None:
        config = client.Configuration()
        config.host = host
        if token:
            config.api_key = {"authorization": f"Bearer {token}"}
        if ca_file:
            config.ssl_ca_cert = ca_file
        self._api = client.ApiClient(config)
        self._core = client.CoreV1Api(self._api)
        self._apps = client.AppsV1Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)

    async def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except ApiException as exc:
            raise KubeError(f"{what}: {exc.status} {exc.reason}") from exc
        except HTTPError as exc:
            raise KubeError(f"{what}: {exc}") from exc

    def close(self) -> None:
        self._api.close()

    # -- nodes -------------------------------------------------------------------------------
    async def nodes(self, gpu_resource: str) -> list[KubeNode]:
        found = await self._call("list nodes", self._core.list_node)
        nodes = []
        for node in found.items:
            conditions = (node.status.conditions or []) if node.status else []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            allocatable = node.status.allocatable if node.status else None
            nodes.append(
                KubeNode(
                    name=node.metadata.name,
                    ready=ready,
                    unschedulable=bool(node.spec and node.spec.unschedulable),
                    gpus=_gpus(allocatable, gpu_resource),
                    labels=dict(node.metadata.labels or {}),
                )
            )
        return nodes

    async def cordon(self, name: str) -> None:
        body = {"spec": {"unschedulable": True}}
        await self._call(f"cordon {name}", lambda: self._core.patch_node(name, body))

    async def uncordon(self, name: str) -> None:
        body = {"spec": {"unschedulable": False}}
        await self._call(f"uncordon {name}", lambda: self._core.patch_node(name, body))

    async def drain(self, name: str) -> int:
        """Evict the node's pods but its DaemonSets' (they stay with the node, as `kubectl
        drain --ignore-daemonsets`); the pods still there (0: drained)."""
        pods = await self._call("list pods", self._core.list_pod_for_all_namespaces)
        left = 0
        for pod in pods.items:  # filtered here: not every API server honours field selectors
            if not pod.spec or pod.spec.node_name != name:
                continue
            owners = pod.metadata.owner_references or []
            if any(o.kind == "DaemonSet" for o in owners):
                continue
            left += 1
            eviction = client.V1Eviction(
                metadata=client.V1ObjectMeta(
                    name=pod.metadata.name, namespace=pod.metadata.namespace
                )
            )
            await self._call(
                f"evict {pod.metadata.namespace}/{pod.metadata.name}",
                lambda p=pod, e=eviction: self._core.create_namespaced_pod_eviction(
                    p.metadata.name, p.metadata.namespace, e
                ),
            )
        return left

    async def delete_node(self, name: str) -> None:
        try:
            await self._call(f"delete node {name}", lambda: self._core.delete_node(name))
        except KubeError as exc:
            if " 404 " not in str(exc):  # gone already
                raise

    # -- GPU runtime ---------------------------------------------------------------------------
    async def ensure_gpu_runtime(self, vendor: str) -> None:
        """The NVIDIA GPU Operator's ClusterPolicy (the operator's chart installed its CRD), or
        the AMD or Intel device plugin's DaemonSet; nothing when it is there already."""
        if vendor == "nvidia":
            group, version, plural, name = CLUSTER_POLICY
            if await self._exists(
                lambda: self._custom.get_cluster_custom_object(group, version, plural, name)
            ):
                return
            policy = {
                "apiVersion": f"{group}/{version}", "kind": "ClusterPolicy",
                "metadata": {"name": name},
                "spec": {
                    "operator": {"defaultRuntime": "containerd"},
                    "driver": {"enabled": True}, "toolkit": {"enabled": True},
                    "devicePlugin": {"enabled": True}, "dcgmExporter": {"enabled": True},
                    "gfd": {"enabled": True}, "mig": {"strategy": "single"},
                },
            }  # fmt: skip
            await self._call(
                "create ClusterPolicy",
                lambda: self._custom.create_cluster_custom_object(group, version, plural, policy),
            )
            return
        if vendor not in PLUGINS:
            raise KubeError(f"no GPU runtime known for vendor {vendor!r}")
        name, image = PLUGINS[vendor]
        if await self._exists(
            lambda: self._apps.read_namespaced_daemon_set(name, PLUGIN_NAMESPACE)
        ):
            return
        await self._call(
            f"create DaemonSet {name}",
            lambda: self._apps.create_namespaced_daemon_set(
                PLUGIN_NAMESPACE, _plugin_daemon_set(name, image)
            ),
        )

    async def gpu_runtime_ready(self, vendor: str) -> bool:
        """The operator reports `ready`, or the plugin runs on every node it should."""
        if vendor == "nvidia":
            group, version, plural, name = CLUSTER_POLICY
            policy: dict[str, Any] = await self._call(
                "read ClusterPolicy",
                lambda: self._custom.get_cluster_custom_object(group, version, plural, name),
            )
            return (policy.get("status") or {}).get("state") == "ready"
        name, _ = PLUGINS[vendor]
        found = await self._call(
            f"read DaemonSet {name}",
            lambda: self._apps.read_namespaced_daemon_set(name, PLUGIN_NAMESPACE),
        )
        status = found.status
        return bool(
            status
            and status.desired_number_scheduled
            and status.number_ready == status.desired_number_scheduled
        )

    async def _exists(self, read: Callable[[], object]) -> bool:
        try:
            await asyncio.to_thread(read)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise KubeError(f"{exc.status} {exc.reason}") from exc
        return True


DEVICE_PLUGINS_DIR = "/var/lib/kubelet/device-plugins"  # where kubelet takes registrations


def _plugin_daemon_set(name: str, image: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": PLUGIN_NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{
                        "name": name, "image": image,
                        "securityContext": {"privileged": True},
                        "volumeMounts": [{"name": "dp", "mountPath": DEVICE_PLUGINS_DIR}],
                    }],
                    "volumes": [{"name": "dp", "hostPath": {"path": DEVICE_PLUGINS_DIR}}],
                },
            },
        },
    }  # fmt: skip
