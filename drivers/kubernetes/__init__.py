"""A tenant Kubernetes cluster's API (the official Python client), as its head node uses it."""

from drivers.kubernetes.cluster import GPU_RESOURCES, KubeCluster, KubeError, KubeNode

__all__ = ["GPU_RESOURCES", "KubeCluster", "KubeError", "KubeNode"]
