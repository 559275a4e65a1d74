"""`metalplane up` as an operator runs it: everything starts, the lab is enrolled, a node
provisions through the CLI; Ctrl-C stops every process; starting again resumes the workflow that
was in flight; a QEMU node (`--qemu-nodes`) PXE boots to active."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from cli import devstack

API_PORT = 18400
ENV = {
    "METALPLANE_API_PORT": str(API_PORT),
    "METALPLANE_PUBLIC_URL": f"http://127.0.0.1:{API_PORT}",
    "METALPLANE_TEMPORAL_ADDRESS": "127.0.0.1:17500",
    "METALPLANE_TEMPORAL_UI_PORT": "17600",
    "METALPLANE_API_URL": f"http://127.0.0.1:{API_PORT}",
}


def _metalplane(*args: str, data_dir: Path) -> list[str]:
    return [devstack.venv_bin("metalplane"), *args]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METALPLANE_")}
    return env | ENV | {"METALPLANE_DATA_DIR": str(data_dir)}


def _start(data_dir: Path) -> subprocess.Popen[bytes]:
    log = open(data_dir.parent / "up.log", "ab")
    return subprocess.Popen(
        _metalplane("up", "--nodes", "2", "--qemu-nodes", "1", "--boot-delay", "5",
                    "--lab-port", "18500", "--ipmi-base-port", "19500", data_dir=data_dir),
        env=_env(data_dir), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _token(data_dir: Path, role: str = "operator", tenant: str | None = None) -> str:
    tenancy = ("--tenant", tenant) if tenant else ()
    out = subprocess.run(
        _metalplane("token", "--role", role, *tenancy, data_dir=data_dir),
        env=_env(data_dir), capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = out.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token  # the token alone on stdout
    return token


def _wait_node(data_dir: Path, node_id: str, done, timeout: float = 120) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {_token(data_dir)}"}
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(f"{ENV['METALPLANE_API_URL']}/v1/nodes/{node_id}", headers=headers)
            if reply.status_code == 200:
                last = reply.json()
                if done(last):
                    return last
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{node_id} did not get there in {timeout} s: {last}")


def _wait_banner(data_dir: Path, timeout: float = 120) -> str:
    """`up` prints its banner once every service runs and the lab is enrolled and cabled."""
    log_file = data_dir.parent / "up.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_file.read_text()
        if "metalplane is up." in text:
            return text
        time.sleep(0.3)
    raise AssertionError(f"no banner within {timeout} s: {log_file.read_text()[-2000:]}")


def _wait_banner_count(data_dir: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (data_dir.parent / "up.log").read_text().count("metalplane is up.") < count:
        assert time.monotonic() < deadline, "no banner"
        time.sleep(0.3)


def _create_network(data_dir: Path, timeout: float = 180) -> dict:  # type: ignore[type-arg]
    api = ENV["METALPLANE_API_URL"]
    admin = {"Authorization": f"Bearer {_token(data_dir, 'platform-admin')}"}
    body = {"id": "acme", "display_name": "A", "quotas": {"nodes": 1, "gpus": 8}}
    reply = httpx.post(f"{api}/v1/tenants", json=body, headers=admin)
    assert reply.status_code == 201, reply.text
    tenant = {"Authorization": f"Bearer {_token(data_dir, 'tenant-admin', 'acme')}"}
    reply = httpx.post(f"{api}/v1/networks", json={"name": "lan"}, headers=tenant)
    assert reply.status_code == 201, reply.text
    url = f"{api}/v1/networks/{reply.json()['id']}"
    deadline = time.monotonic() + timeout
    network = reply.json()
    while network["state"] == "creating" and time.monotonic() < deadline:
        time.sleep(0.3)
        network = httpx.get(url, headers=tenant).json()
    return network


def _create_cluster(data_dir: Path, timeout: float = 300) -> dict:  # type: ignore[type-arg]
    """A one-node Slurm cluster of the tenant (on the free lab-002) until it is ready."""
    api = ENV["METALPLANE_API_URL"]
    tenant = {"Authorization": f"Bearer {_token(data_dir, 'tenant-admin', 'acme')}"}
    body = {"name": "c1", "kind": "slurm", "node_count": 1, "gpu_model": "H100 80GB HBM3",
            "image": "lab-sim"}  # fmt: skip
    reply = httpx.post(f"{api}/v1/clusters", json=body, headers=tenant)
    assert reply.status_code == 201, reply.text
    url = f"{api}/v1/clusters/{reply.json()['id']}"
    deadline = time.monotonic() + timeout
    cluster = reply.json()
    while cluster["state"] == "creating" and time.monotonic() < deadline:
        time.sleep(0.5)
        cluster = httpx.get(url, headers=tenant).json()
    return cluster


def _provision(data_dir: Path, node_id: str, image: str) -> None:
    cli = subprocess.run(
        _metalplane("nodes", "provision", node_id, "--image", image, "--no-wait",
                    data_dir=data_dir),
        env=_env(data_dir), capture_output=True, text=True,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr


def _stop(process: subprocess.Popen[bytes]) -> None:
    children = psutil.Process(process.pid).children(recursive=True)
    assert children, "up runs its services as child processes"
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert process.wait(60) == 0
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running after Ctrl-C: {[p.pid for p in alive]}"


def test_up_provision_stop_and_resume(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    up = _start(data_dir)
    try:
        banner = _wait_banner(data_dir)
        node = _wait_node(data_dir, "lab-001", lambda n: n["state"] == "available")
        # Every enrolled node is commissioned first: the QEMU node's agent really inspects it.
        qemu = _wait_node(data_dir, "lab-003", lambda n: n["state"] != "inspecting", 240)
        assert qemu["state"] == "available" and qemu["sku"] == "lab-qemu-vm", qemu
        network_lab = (
            "Network lab  Ethernet: 2 leaves + 1 spine (Linux + FRR, EVPN), 2 node NICs; "
            "InfiniBand: ibsim + OpenSM, 2 HCA ports"
        )
        assert network_lab in banner, banner[-2000:]
        assert "Clusters     Slurm: lab nodes run munged, slurmd and slurmctld" in banner
        assert "2 simulated nodes + 1 QEMU nodes (image lab-qemu)" in banner
        _provision(data_dir, "lab-001", "lab-sim")
        _wait_node(
            data_dir, "lab-001",
            lambda n: (n.get("operation") or {}).get("phase") == "booting",
        )  # fmt: skip
    finally:
        _stop(up)

    up = _start(data_dir)  # same data dir: the in-flight workflow resumes
    try:
        node = _wait_node(data_dir, "lab-001", lambda n: n["state"] in ("active", "failed"))
        assert node["state"] == "active", node["last_error"]
        listing = subprocess.run(
            _metalplane("nodes", "list", data_dir=data_dir),
            env=_env(data_dir), capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "lab-001" in listing.stdout and "active" in listing.stdout
        # An operator's reboot from the CLI, followed live until the node is active again.
        reboot = subprocess.run(
            _metalplane("nodes", "reboot", "lab-001", "--timeout", "120", data_dir=data_dir),
            env=_env(data_dir), capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert reboot.returncode == 0, reboot.stdout + reboot.stderr
        node = _wait_node(data_dir, "lab-001", lambda n: True)  # as the CLI left it: done
        assert node["state"] == "active" and node["operation"]["kind"] == "reboot", node
        _wait_banner_count(data_dir, 2)
        # The QEMU node PXE boots the lab image while the tenant's network and cluster are made.
        _provision(data_dir, "lab-003", "lab-qemu")
        # The lab's switches got new credentials on this start: a tenant network still reaches them.
        assert _create_network(data_dir)["state"] == "ready"
        # A tenant's Slurm cluster on `make run`: real daemons on the lab node, a job runs.
        cluster = _create_cluster(data_dir)
        assert cluster["state"] == "ready", cluster["last_error"]
        srun = httpx.post(
            "http://127.0.0.1:18500/lab/nodes/lab-002/slurm",
            json={"argv": ["srun", "-N1", "hostname"]}, timeout=60,
        ).json()  # fmt: skip
        assert srun["ok"] and srun["stdout"].split() == ["lab-002"], srun
        qemu = _wait_node(data_dir, "lab-003", lambda n: n["state"] in ("active", "failed"), 240)
        assert qemu["state"] == "active", qemu["last_error"]
        assert qemu["facts"]["iommu_mode"] == "passthrough"  # read from the VM's kernel
    finally:
        _stop(up)
