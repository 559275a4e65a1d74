"""kubeadm configurations as kubeadm v1beta4 documents them: kinds and API version, the
control-plane endpoint, one valid bootstrap token, the CA hash workers pin (checked against
openssl's computation of the same hash), node names and labels as list-form kubelet args."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from images import kubeadm

LABELS = {"nvidia.com/gpu.product": "H100", "metalplane.io/cluster": "c1"}


@pytest.fixture(scope="module")
def ca() -> kubeadm.ClusterCa:
    return kubeadm.new_ca("acme-c1")


@pytest.fixture(scope="module")
def cluster(ca: kubeadm.ClusterCa) -> kubeadm.KubeadmCluster:
    return kubeadm.KubeadmCluster(
        name="acme-c1", control_plane_address="10.50.0.11",
        token=kubeadm.bootstrap_token(), ca_hash=kubeadm.ca_cert_hash(ca.cert_pem),
    )  # fmt: skip


def test_tokens_match_the_bootstrap_token_format_and_differ() -> None:
    tokens = {kubeadm.bootstrap_token() for _ in range(50)}
    assert len(tokens) == 50 and all(kubeadm.TOKEN.fullmatch(t) for t in tokens)
    with pytest.raises(ValueError, match="bootstrap token"):
        kubeadm.KubeadmCluster("c", "10.0.0.1", token="ABCDEF.0123456789abcdef", ca_hash="x")


def test_the_ca_hash_is_what_openssl_computes(ca: kubeadm.ClusterCa, tmp_path: Path) -> None:
    cert = tmp_path / "ca.crt"
    cert.write_bytes(ca.cert_pem)
    pubkey = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"],
                            capture_output=True, check=True).stdout  # fmt: skip
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pubkey,
                         capture_output=True, check=True).stdout  # fmt: skip
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-r"], input=der,
                            capture_output=True, check=True).stdout.split()[0].decode()  # fmt: skip
    assert kubeadm.ca_cert_hash(ca.cert_pem) == f"sha256:{digest}"
    parsed = x509.load_pem_x509_certificate(ca.cert_pem)
    assert parsed.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert b"PRIVATE KEY" in ca.key_pem and b"PRIVATE KEY" not in ca.cert_pem


def test_init_renders_init_and_cluster_configuration(cluster: kubeadm.KubeadmCluster) -> None:
    init, config = yaml.safe_load_all(kubeadm.render_init(cluster, "lab-001", LABELS))
    assert (init["apiVersion"], init["kind"]) == ("kubeadm.k8s.io/v1beta4", "InitConfiguration")
    assert (config["apiVersion"], config["kind"]) == (
        "kubeadm.k8s.io/v1beta4", "ClusterConfiguration",
    )  # fmt: skip
    assert init["bootstrapTokens"][0]["token"] == cluster.token
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.50.0.11", "bindPort": 6443}
    assert init["nodeRegistration"]["name"] == "lab-001"
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [
        {"name": "node-labels",
         "value": "metalplane.io/cluster=c1,nvidia.com/gpu.product=H100"},
    ]  # fmt: skip
    assert config["controlPlaneEndpoint"] == "10.50.0.11:6443"
    assert config["clusterName"] == "acme-c1"
    assert config["networking"]["podSubnet"] == "10.244.0.0/16"


def test_join_pins_the_ca_and_names_the_node(cluster: kubeadm.KubeadmCluster) -> None:
    join = yaml.safe_load(kubeadm.render_join(cluster, "lab-002", LABELS))
    assert (join["apiVersion"], join["kind"]) == ("kubeadm.k8s.io/v1beta4", "JoinConfiguration")
    discovery = join["discovery"]["bootstrapToken"]
    assert discovery == {
        "apiServerEndpoint": "10.50.0.11:6443", "token": cluster.token,
        "caCertHashes": [cluster.ca_hash], "unsafeSkipCAVerification": False,
    }  # fmt: skip
    assert join["nodeRegistration"]["name"] == "lab-002"
    assert cluster.token not in repr(cluster)  # secrets stay out of logs
