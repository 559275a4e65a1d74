"""Build, run and tear down a leaf/spine fabric in network namespaces."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.fabric import frr, sshd
from lab.fabric.system import (
    in_netns,
    ip_batch,
    namespaces,
    netns_pids,
    owned_pid,
    parent_pid,
    read_pid,
    root_links,
    run,
    stop_pids,
)
from lab.fabric.topology import (
    HOST_IFNAME,
    MGMT_IFNAME,
    RUNTIME_ROOT,
    FabricConfig,
    FabricError,
    HostPlan,
    SwitchPlan,
    Topology,
    plan,
)

log = logging.getLogger("lab.fabric")

REPO = Path(__file__).resolve().parents[2]
STATE_FILE = "fabric.json"
# No IPv6 anywhere: nothing then talks on its own, so a host's packet counters move only
# with the traffic a test sends (the isolation checks count them).
NO_IPV6 = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
SWITCH_SYSCTLS = ["net.ipv4.ip_forward=1", *NO_IPV6]


@dataclass(frozen=True)
class SwitchAccess:
    """What a driver needs to manage one switch of the lab."""

    name: str
    host: str
    port: int
    username: str
    password: str = dataclasses.field(repr=False)
    key_file: str
    known_hosts: str
    vtep: str
    asn: int
    vtysh_socket_dir: str
    access_ports: tuple[str, ...]


class Fabric:
    def __init__(self, config: FabricConfig) -> None:
        self.config = config
        self.topology: Topology = plan(config)
        self.state_dir = Path(config.state_dir)
        self.credentials: sshd.Credentials | None = None
        self.started_in: float | None = None
        self._sshd: dict[str, subprocess.Popen[bytes]] = {}

    # Lifecycle.

    def up(self, timeout: float = 30.0) -> Fabric:
        """Build everything (after removing what a crashed run of this prefix left), start the
        daemons, return once every sshd answers and every BGP session is established."""
        teardown(self.config.prefix, self.state_dir)
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._build_network()
            switches = list(self.topology.switches)
            self.credentials = sshd.make_credentials(self.state_dir / "ssh", switches)
            for switch in switches:
                frr.prepare(switch, self.topology)
            frr.start(switches, "zebra")
            frr.start(switches, "bgpd")
            for switch in switches:
                self._sshd[switch.name] = sshd.start(switch, self.state_dir / "ssh", self.state_dir)
            self._save()
            self._wait_ready(started + timeout)
        except BaseException:
            self.down()
            raise
        self.started_in = time.monotonic() - started
        self._save()
        log.info("fabric %s up in %.2fs", self.config.prefix, self.started_in)
        return self

    def down(self) -> None:
        teardown(self.config.prefix, self.state_dir)
        for proc in self._sshd.values():
            proc.poll()  # teardown reaped it; let Popen know
        self._sshd.clear()

    @classmethod
    def load(cls, state_dir: Path) -> Fabric:
        """The fabric described by a state dir (another process started it)."""
        data = json.loads((Path(state_dir) / STATE_FILE).read_text())
        config = FabricConfig(**{**data["config"], "state_dir": Path(data["config"]["state_dir"])})
        fabric = cls(config)
        fabric.credentials = sshd.Credentials(**data["credentials"])
        fabric.started_in = data.get("started_in")
        return fabric

    def _save(self) -> None:
        data: dict[str, Any] = {
            "config": {**dataclasses.asdict(self.config), "state_dir": str(self.state_dir)},
            "credentials": dataclasses.asdict(self.credentials) if self.credentials else None,
            "pids": self.pids(),
            "started_in": self.started_in,
            "topology": dataclasses.asdict(self.topology),
        }
        (self.state_dir / STATE_FILE).write_text(json.dumps(data, indent=2) + "\n")

    def pids(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for switch in self.topology.switches:
            sshd_pid = read_pid(self.state_dir / f"sshd-{switch.name}.pid")
            proc = self._sshd.get(switch.name)
            extra = [proc.pid] if proc is not None else [sshd_pid] if sshd_pid else []
            found[switch.name] = [*frr.pids(switch), *extra]
        return found

    def _build_network(self) -> None:
        t = self.topology
        root = [f"netns add {x.netns}" for x in (*t.switches, *t.hosts)]
        root += [
            f"link add {t.mgmt_bridge} type bridge",
            f"address add {t.mgmt_gateway} dev {t.mgmt_bridge}",
            f"link set {t.mgmt_bridge} up",
        ]
        for s in t.switches:
            root += [
                f"link add {s.mgmt_link} type veth peer name {MGMT_IFNAME} netns {s.netns}",
                f"link set {s.mgmt_link} master {t.mgmt_bridge}",
                f"link set {s.mgmt_link} up",
            ]
        for spine in t.spines:
            for u in spine.underlay:
                leaf = t.switch(u.peer)
                back = next(x for x in leaf.underlay if x.peer == spine.name)
                root.append(
                    f"link add {u.ifname} netns {spine.netns} type veth"
                    f" peer name {back.ifname} netns {leaf.netns}"
                )
        for h in t.hosts:
            root.append(
                f"link add {h.port} netns {t.switch(h.leaf).netns} type veth"
                f" peer name {h.ifname} netns {h.netns}"
            )
        ip_batch(root)
        length = t.mgmt_gateway.split("/")[1]
        for s in t.switches:
            run(in_netns(s.netns, "sysctl", "-q", "-w", *SWITCH_SYSCTLS))
            lines = [
                "link set lo up",
                f"address add {s.loopback}/32 dev lo",
                f"address add {s.mgmt_address}/{length} dev {MGMT_IFNAME}",
                f"link set {MGMT_IFNAME} up",
            ]
            for u in s.underlay:
                lines += [f"address add {u.address} dev {u.ifname}", f"link set {u.ifname} up"]
            ip_batch(lines, s.netns)  # access ports stay down and unbridged until configured
        for h in t.hosts:
            run(in_netns(h.netns, "sysctl", "-q", "-w", *NO_IPV6))
            ip_batch(["link set lo up", f"link set {h.ifname} up"], h.netns)

    def _wait_ready(self, deadline: float) -> None:
        switches = list(self.topology.switches)
        silent = sshd.wait_answering(
            [s.mgmt_address for s in switches], max(0.0, deadline - time.monotonic())
        )
        dead = [name for name, proc in self._sshd.items() if proc.poll() is not None]
        if silent or dead:
            raise FabricError(
                f"sshd not answering on {silent}, exited on {dead}: see {self.state_dir}/sshd-*.log"
            )
        pending = switches
        while pending and time.monotonic() < deadline:
            pending = [s for s in pending if not self._routing_ready(s)]
            if pending:
                time.sleep(0.05)
        if pending:
            names = [s.name for s in pending]
            raise FabricError(f"BGP not converged on {names}: see {pending[0].runtime_dir}/*.log")

    def _routing_ready(self, switch: SwitchPlan) -> bool:
        if not frr.sessions_established(switch):
            return False
        if switch.role != "leaf":
            return True
        routes = json.loads(run(["ip", "-n", switch.netns, "-j", "route", "show"]) or "[]")
        reachable = {r.get("dst") for r in routes}
        return all(leaf.loopback in reachable for leaf in self.topology.leaves if leaf != switch)

    # Access for drivers and tests.

    def switch(self, name: str) -> SwitchPlan:
        return self.topology.switch(name)

    def host(self, name: str) -> HostPlan:
        return self.topology.host(name)

    def access(self, name: str) -> SwitchAccess:
        switch = self.switch(name)
        credentials = self._credentials()
        return SwitchAccess(
            name=name,
            host=switch.mgmt_address,
            port=sshd.PORT,
            username=credentials.username,
            password=credentials.password,
            key_file=credentials.key_file,
            known_hosts=credentials.known_hosts,
            vtep=switch.loopback,
            asn=self.topology.asn,
            vtysh_socket_dir=switch.runtime_dir,
            access_ports=switch.access_ports,
        )

    def _credentials(self) -> sshd.Credentials:
        if self.credentials is None:
            raise FabricError("the fabric is not up")
        return self.credentials

    def switch_exec(self, name: str, *argv: str) -> str:
        """A command in a switch's namespace, out of band (not over its SSH)."""
        return run(in_netns(self.switch(name).netns, *argv))

    def switch_links(self, name: str) -> list[dict[str, Any]]:
        return json.loads(self.switch_exec(name, "ip", "-d", "-j", "link", "show") or "[]")

    def drop_ssh_sessions(self, name: str) -> int:
        """Kill the SSH sessions open on a switch (not its listener); how many there were."""
        listener = read_pid(self.state_dir / f"sshd-{name}.pid")
        sessions = [p for p in netns_pids(self.switch(name).netns) if parent_pid(p) == listener]
        stop_pids(sessions)
        return len(sessions)

    def vtysh(self, name: str, command: str) -> str:
        return frr.vtysh(self.switch(name), command)

    def vtysh_json(self, name: str, command: str) -> Any:
        return frr.vtysh_json(self.switch(name), command)

    def host_exec(self, name: str, *argv: str) -> str:
        return run(in_netns(self.host(name).netns, *argv))

    def set_address(self, name: str, cidr: str) -> None:
        h = self.host(name)
        ip_batch(
            [
                f"address flush dev {h.ifname}",
                f"address add {cidr} dev {h.ifname}",
                f"neigh flush dev {h.ifname}",
            ],
            h.netns,
        )

    def flush_neighbors(self, name: str) -> None:
        h = self.host(name)
        ip_batch([f"neigh flush dev {h.ifname}"], h.netns)

    def ping(
        self, name: str, dst: str, *, count: int = 1, timeout: float = 1.0, interval: float = 0.2
    ) -> int:
        """Echo replies received by host `name` from `dst`."""
        argv = [sys.executable, "-m", "lab.fabric.ping", dst, "--count", str(count)]
        argv += ["--timeout", str(timeout), "--interval", str(interval)]
        result = subprocess.run(
            in_netns(self.host(name).netns, *argv),
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=count * (timeout + interval) + 30,
            check=False,
        )
        if result.returncode not in (0, 1):
            raise FabricError(f"ping from {name} failed: {result.stderr.strip()}")
        return int(json.loads(result.stdout)["received"])

    def wait_reachable(self, name: str, dst: str, timeout: float = 10.0) -> float:
        """Seconds until `dst` answers host `name`; FabricError after `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.ping(name, dst, timeout=0.5):
                return time.monotonic() - started
        raise FabricError(f"{dst} does not answer {name} within {timeout}s")

    def counters(self, name: str) -> dict[str, int]:
        """rx/tx packets of a host's NIC."""
        h = self.host(name)
        link = json.loads(run(["ip", "-n", h.netns, "-s", "-j", "link", "show", "dev", h.ifname]))
        stats = link[0]["stats64"]
        return {"rx": stats["rx"]["packets"], "tx": stats["tx"]["packets"]}

    def mac(self, name: str) -> str:
        h = self.host(name)
        link = json.loads(run(["ip", "-n", h.netns, "-j", "link", "show", "dev", h.ifname]))
        return str(link[0]["address"])

    def neighbor_mac(self, name: str, address: str) -> str | None:
        h = self.host(name)
        entries = json.loads(
            run(["ip", "-n", h.netns, "-j", "neigh", "show", "to", address, "dev", h.ifname])
            or "[]"
        )
        return next((e["lladdr"] for e in entries if "lladdr" in e), None)


def teardown(prefix: str, state_dir: Path | None = None) -> None:
    """Stop and delete everything of a fabric prefix, whether or not its state survived: the
    PIDs it recorded (if they still are its processes), every process in its namespaces, the
    namespaces, its root-namespace links and its FRR runtime dir."""
    runtime = RUNTIME_ROOT / prefix
    markers = [str(runtime)] + ([str(state_dir)] if state_dir is not None else [])
    recorded: set[int] = set()
    state = Path(state_dir) / STATE_FILE if state_dir is not None else None
    if state is not None and state.exists():
        for pids in json.loads(state.read_text()).get("pids", {}).values():
            recorded.update(pids)
    pidfiles = [*runtime.glob("*/*.pid")]
    if state_dir is not None:
        pidfiles += Path(state_dir).glob("sshd-*.pid")
    for pidfile in pidfiles:
        pid = read_pid(pidfile)
        if pid is not None:
            recorded.add(pid)
    pids = {p for p in recorded if owned_pid(p, markers)}
    for netns in namespaces(prefix):
        pids.update(netns_pids(netns))
    stop_pids(pids)
    for netns in namespaces(prefix):
        run(["ip", "netns", "delete", netns])
    for link in root_links(prefix):
        try:
            run(["ip", "link", "delete", link])
        except FabricError:
            if link in root_links(prefix):  # not just gone with its namespace peer
                raise
    shutil.rmtree(runtime, ignore_errors=True)


__all__ = ["HOST_IFNAME", "Fabric", "FabricConfig", "FabricError", "SwitchAccess", "teardown"]
