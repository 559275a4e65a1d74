"""The Lab: SimNodes, their BMC simulators, the boot runner and the control API."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import uvicorn

from lab.boot import BootRunner
from lab.cluster import ClusterRunner
from lab.control import create_app
from lab.flat_network import FlatNetwork
from lab.ipmi_bmc import IpmiLab
from lab.node import SimNode
from lab.qemu import QemuRunner
from lab.redfish_bmc import RedfishLab
from lab.slurm import SlurmLab

log = logging.getLogger(__name__)

LAB_USERNAME = "admin"
LAB_PASSWORD = "lab-password"
Protocol = Literal["ipmi", "redfish"]


@dataclass
class LabConfig:
    nodes: int = 4
    state_dir: Path = Path(".metalplane/lab")
    ipmi_base_port: int = 19001
    redfish_port: int = 18101
    control_port: int = 18100
    boot_url: str = "http://127.0.0.1:8000"
    boot_delay: float = 2.0
    protocols: tuple[Protocol, ...] = ("ipmi", "redfish")  # node i gets protocols[i % len]
    address: str = "127.0.0.1"
    users: dict[str, str] = field(default_factory=lambda: {LAB_USERNAME: LAB_PASSWORD})
    slurm: bool = False  # Slurm roles run real Slurm daemons (root); Kubernetes roles always run
    flat_network: str | None = None  # prefix: every node on one bridge, no fabric (root)
    gpu_model: str | None = None  # every node's, instead of the lab's mix
    qemu_nodes: int = 0  # more nodes, after the simulated ones: QEMU VMs that really boot (IPMI)
    ssh_base_port: int = 2200  # QEMU node N's SSH server on 127.0.0.1:(this + N - 1); 0: none


class Lab:
    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.nodes: dict[str, SimNode] = {}
        self.ipmi = IpmiLab(config.users, config.address)
        self.redfish: RedfishLab | None = None
        self.boot: BootRunner | None = None
        self.clusters: ClusterRunner | None = None
        self.flat: FlatNetwork | None = None
        self.qemu: QemuRunner | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None

    # -- enrollment -------------------------------------------------------------------------

    def ipmi_port(self, node: SimNode) -> int:
        return self.config.ipmi_base_port + int(node.node_id.split("-")[1]) - 1

    def ssh_port(self, node: SimNode) -> int:
        """Where a QEMU node's SSH server is forwarded on 127.0.0.1 (0: not forwarded)."""
        if not self.config.ssh_base_port:
            return 0
        return self.config.ssh_base_port + int(node.node_id.split("-")[1]) - 1

    def is_qemu(self, node: SimNode) -> bool:
        """QEMU nodes come after the simulated ones."""
        return int(node.node_id.split("-")[1]) > self.config.nodes

    def enrollment(self, node: SimNode) -> dict[str, Any]:
        assert self.redfish is not None
        user, password = next(iter(self.config.users.items()))
        redfish_url = self.redfish.system_url(node)
        if node.protocol == "ipmi":
            # IPMI nodes expose BIOS over the same BMC's Redfish service, like real BMCs do.
            address = f"{self.config.address}:{self.ipmi_port(node)}"
        else:
            address = redfish_url
        return {
            "id": node.node_id,
            "agent_image": "lab-qemu" if self.is_qemu(node) else "lab-sim",
            # A VM has no GPU: its own SKU; a simulated node's is the catalog's match.
            **({"sku": "lab-qemu-vm"} if self.is_qemu(node) else {}),
            # A VM's serial port is a socket, as a console server's port would be.
            **(
                {"console": self.qemu.console_address(node.node_id)}
                if self.qemu and self.is_qemu(node)
                else {}
            ),
            "vendor": node.vendor,
            "model": node.model,
            "gpu": {"count": 0}
            if self.is_qemu(node)
            else {"vendor": node.gpu_vendor, "model": node.gpu_model, "count": node.gpu_count},
            "macs": list(node.macs),
            "bmc": {
                "protocol": node.protocol,
                "address": address,
                "username": user,
                "password": password,
                "redfish_address": redfish_url if node.protocol == "ipmi" else None,
            },
        }

    # -- lifecycle --------------------------------------------------------------------------

    def _load_nodes(self) -> None:
        node_dir = self.config.state_dir / "nodes"
        node_dir.mkdir(parents=True, exist_ok=True)
        protocols = self.config.protocols
        for index in range(1, self.config.nodes + self.config.qemu_nodes + 1):
            node_id = f"lab-{index:03d}"
            path = node_dir / f"{node_id}.json"
            if path.exists():
                node = SimNode.from_dict(json.loads(path.read_text()))
            else:
                protocol = protocols[(index - 1) % len(protocols)]
                if index > self.config.nodes:
                    protocol = "ipmi"  # QEMU nodes: powered and switched over IPMI
                node = SimNode.create(index, protocol, self.config.gpu_model)
            if index > self.config.nodes:  # a lab restart cut the VMs' power
                node.power, node.boot_in_progress, node.os_up = "off", False, False
            node.attach(self.qemu if index > self.config.nodes else self.boot, path)
            self.nodes[node_id] = node

    async def start(self) -> None:
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.clusters = ClusterRunner(SlurmLab(cfg.state_dir / "slurm"), run_slurm=cfg.slurm)
        if cfg.qemu_nodes:
            if not QemuRunner.available():
                raise RuntimeError("QEMU nodes need qemu-system-x86_64 (make lab-image, as root)")
            self.qemu = QemuRunner(
                asyncio.get_running_loop(), cfg.state_dir / "qemu", cfg.boot_url, self.ssh_port
            )
        self.boot = BootRunner(
            asyncio.get_running_loop(), cfg.boot_url, cfg.boot_delay, self.clusters
        )
        self._load_nodes()
        if cfg.flat_network:
            self.flat = FlatNetwork(cfg.flat_network)
            await asyncio.to_thread(self.flat.up, list(self.nodes))
            for node_id, node in self.nodes.items():
                node.set_netns(self.flat.netns(node_id))
        # Every node gets both: an IPMI port (IPMI nodes) and a Redfish System (BIOS for all).
        self.redfish = RedfishLab(
            self.nodes.values(), cfg.users, cfg.state_dir, cfg.redfish_port, cfg.address
        )
        for node in self.nodes.values():
            if node.protocol == "ipmi":
                self.ipmi.add(node, self.ipmi_port(node))
        self.ipmi.start()
        self.redfish.start()
        self._resume_boots()
        app = create_app(self)
        config = uvicorn.Config(
            app, host=cfg.address, port=cfg.control_port, log_level="warning", lifespan="off"
        )
        self._uvicorn = uvicorn.Server(config)
        self._uvicorn.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._serve_task = asyncio.create_task(self._uvicorn.serve())
        while not self._uvicorn.started:
            if self._serve_task.done():
                self._serve_task.result()  # bind failure: raise it
            await asyncio.sleep(0.02)

    def _resume_boots(self) -> None:
        """A node that was mid network boot when the lab stopped boots again."""
        assert self.boot is not None
        for node in self.nodes.values():
            with node._lock:
                if node.power == "on" and node.boot_in_progress:
                    node.generation += 1
                    self.boot.booting(node, "network", node.generation)

    async def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._serve_task is not None:
            await self._serve_task
        if self.boot is not None:
            await self.boot.close()
        if self.qemu is not None:
            await self.qemu.close()
        if self.clusters is not None:
            await self.clusters.close()
        if self.flat is not None:
            await asyncio.to_thread(self.flat.down)
        self.ipmi.stop()
        if self.redfish is not None:
            self.redfish.stop()
        for node in self.nodes.values():
            node.attach(None, None)
