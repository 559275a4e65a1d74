"""kubeadm configuration of a tenant's Kubernetes cluster, rendered per cluster for its nodes'
user-data: the control-plane node's InitConfiguration + ClusterConfiguration, the workers'
JoinConfiguration (kubeadm.k8s.io/v1beta4, kubeadm >= 1.31).

metalplane makes the cluster's CA itself, so the discovery hash the workers pin is known before
any node boots (kubeadm uses a CA it finds in /etc/kubernetes/pki instead of making one, as the
Cluster API kubeadm bootstrap provider does), and one bootstrap token serves the whole cluster.
Formats (kubernetes.io, "kubeadm Configuration (v1beta4)" and "Authenticating with Bootstrap
Tokens"): a token matches `[a-z0-9]{6}\\.[a-z0-9]{16}`; a CA hash is `sha256:` and the hex
SHA-256 of the CA's DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Literal

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "kubeadm.k8s.io/v1beta4"
KUBERNETES_VERSION = "v1.31.4"
API_SERVER_PORT = 6443
TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_ALPHABET = string.ascii_lowercase + string.digits
CA_YEARS = 10
_CA_USAGE = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
    key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
    decipher_only=False,
)  # fmt: skip


def bootstrap_token() -> str:
    """A fresh token: the public id, a dot, the secret."""

    def pick(length: int) -> str:
        return "".join(secrets.choice(_ALPHABET) for _ in range(length))

    return f"{pick(6)}.{pick(16)}"


@dataclass(frozen=True)
class ClusterCa:
    cert_pem: bytes
    key_pem: bytes = field(repr=False)


def new_ca(cluster_name: str) -> ClusterCa:
    """The cluster's own CA (ECDSA P-256, as kubeadm's `encryptionAlgorithm: ECDSA-P256`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster_name}-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks of new nodes drift
        .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    return ClusterCa(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def ca_cert_hash(cert_pem: bytes) -> str:
    spki = (
        x509.load_pem_x509_certificate(cert_pem)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class KubeadmCluster:
    name: str
    control_plane_address: str  # the control-plane node's address on the tenant network
    token: str = field(repr=False)
    ca_hash: str
    pod_subnet: str = "10.244.0.0/16"
    service_subnet: str = "10.96.0.0/12"

    def __post_init__(self) -> None:
        if not TOKEN.fullmatch(self.token):
            raise ValueError("a bootstrap token is [a-z0-9]{6}.[a-z0-9]{16}")

    @property
    def endpoint(self) -> str:
        return f"{self.control_plane_address}:{API_SERVER_PORT}"


def _registration(node_name: str, labels: dict[str, str]) -> dict[str, object]:
    node_labels = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return {
        "name": node_name,
        "criSocket": "unix:///var/run/containerd/containerd.sock",
        # v1beta4: extra arguments are a list of name/value pairs, not a map.
        "kubeletExtraArgs": [{"name": "node-labels", "value": node_labels}] if labels else [],
    }


def render_init(cluster: KubeadmCluster, node_name: str, labels: dict[str, str]) -> str:
    """The control-plane node's `kubeadm init --config` file."""
    init = {
        "apiVersion": API_VERSION,
        "kind": "InitConfiguration",
        "bootstrapTokens": [
            {
                "token": cluster.token,
                "description": f"metalplane: nodes joining {cluster.name}",
                "ttl": "24h0m0s",
                "usages": ["signing", "authentication"],
                "groups": ["system:bootstrappers:kubeadm:default-node-token"],
            }
        ],
        "nodeRegistration": _registration(node_name, labels),
        "localAPIEndpoint": {
            "advertiseAddress": cluster.control_plane_address,
            "bindPort": API_SERVER_PORT,
        },
    }
    config = {
        "apiVersion": API_VERSION,
        "kind": "ClusterConfiguration",
        "clusterName": cluster.name,
        "kubernetesVersion": KUBERNETES_VERSION,
        "controlPlaneEndpoint": cluster.endpoint,
        "certificatesDir": "/etc/kubernetes/pki",
        "encryptionAlgorithm": "ECDSA-P256",
        "networking": {
            "podSubnet": cluster.pod_subnet,
            "serviceSubnet": cluster.service_subnet,
            "dnsDomain": "cluster.local",
        },
    }
    return yaml.safe_dump_all([init, config], sort_keys=False)


def render_join(cluster: KubeadmCluster, node_name: str, labels: dict[str, str]) -> str:
    """A worker's `kubeadm join --config` file: it trusts only the cluster's pinned CA."""
    join = {
        "apiVersion": API_VERSION,
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "apiServerEndpoint": cluster.endpoint,
                "token": cluster.token,
                "caCertHashes": [cluster.ca_hash],
                "unsafeSkipCAVerification": False,
            },
        },
        "nodeRegistration": _registration(node_name, labels),
    }
    return yaml.safe_dump(join, sort_keys=False)


class KubeRole(BaseModel):
    """What one node of a Kubernetes cluster is (user-data; its kubeadm configuration, which
    holds the bootstrap token, comes with the secrets)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")  # the cluster's key on its nodes
    role: Literal["controller", "compute"]  # controller: the control-plane node
    node_name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    address: str  # on the tenant network, "10.50.0.11/24"
    api_endpoint: str  # the control plane, "10.50.0.10:6443"
    gpu_vendor: Literal["nvidia", "amd", "intel"] | None = None
    gpus: int = Field(default=0, ge=0, le=64)
    labels: dict[str, str] = Field(default_factory=dict)
