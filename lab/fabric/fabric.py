"""Build, run and tear down a leaf/spine fabric in network namespaces."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.fabric import frr, sshd, uml
from lab.fabric.remote import RemoteShell
from lab.fabric.system import (
    in_netns,
    ip_batch,
    netns_pids,
    parent_pid,
    read_pid,
    run,
    stop_pids,
)
from lab.fabric.teardown import STATE_FILE, teardown
from lab.fabric.topology import (
    HOST_IFNAME,
    MGMT_IFNAME,
    FabricConfig,
    FabricError,
    HostPlan,
    SwitchPlan,
    Topology,
    plan,
)

log = logging.getLogger("lab.fabric")

REPO = Path(__file__).resolve().parents[2]
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
        self._uml: dict[str, subprocess.Popen[bytes]] = {}  # UML leaves' kernels
        self._kicks: dict[str, subprocess.Popen[bytes]] = {}  # and their wake-up sources
        self._remote: dict[str, RemoteShell] = {}

    # Lifecycle.

    def up(self, timeout: float = 30.0) -> Fabric:
        """Build everything (after removing what a crashed run of this prefix left), start the
        daemons, return once every sshd answers and every BGP session is established."""
        teardown(self.config.prefix, self.state_dir)
        if self._kind("uml"):
            uml.check_installed()
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._build_network()
            switches = list(self.topology.switches)
            self.credentials = sshd.make_credentials(self.state_dir / "ssh", switches)
            for switch in switches:
                frr.prepare(switch, self.topology)
            # The kernels boot first (seconds) while the namespaces' daemons start.
            cpus = sorted(os.sched_getaffinity(0))
            for n, switch in enumerate(self._kind("uml")):
                uml.prepare(switch, self.topology, self.state_dir)
                console = self._console(switch)
                self._uml[switch.name] = uml.start(switch, console, cpus[n % len(cpus)])
                self._kicks[switch.name] = uml.start_kick(switch, console)
            local = self._kind("netns")
            frr.start(local, "zebra")
            frr.start(local, "bgpd")
            for switch in local:
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
        for shell in self._remote.values():
            shell.close()
        self._remote.clear()
        teardown(self.config.prefix, self.state_dir)
        for procs in (self._sshd, self._uml, self._kicks):
            for proc in procs.values():
                proc.poll()  # teardown reaped it; let Popen know
            procs.clear()

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
        """Host PIDs by switch; of a UML leaf its kernel and its wake-up source (the processes
        in the kernel are its own)."""
        found: dict[str, list[int]] = {}
        for switch in self.topology.switches:
            if switch.kind == "uml":
                files = (uml.PID_FILE, uml.KICK_PID_FILE)
                pids = (read_pid(Path(switch.runtime_dir, f)) for f in files)
                found[switch.name] = [p for p in pids if p is not None]
                continue
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
        for s in self._kind("uml"):  # a chassis: the addresses are the kernel's
            run(in_netns(s.netns, "sysctl", "-q", "-w", *NO_IPV6))
            uml.wire(s)
        for s in self._kind("netns"):
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
        silent = [s.mgmt_address for s in switches]
        while silent and time.monotonic() < deadline:
            self._check_kernels()  # a kernel that panicked never answers: say why at once
            silent = sshd.wait_answering(silent, min(0.5, max(0.0, deadline - time.monotonic())))
        dead = [name for name, proc in self._sshd.items() if proc.poll() is not None]
        if silent or dead:
            raise FabricError(
                f"sshd not answering on {silent}, exited on {dead}: see {self.state_dir}/sshd-*.log"
                f" (UML leaves: {self.topology.prefix} runtime dirs' sshd.log)"
            )
        pending = switches
        while pending and time.monotonic() < deadline:
            self._check_kernels()
            pending = [s for s in pending if not self._routing_ready(s)]
            if pending:
                time.sleep(0.05)
        if pending:
            names = [s.name for s in pending]
            raise FabricError(f"BGP not converged on {names}: see {pending[0].runtime_dir}/*.log")

    def _check_kernels(self) -> None:
        for name, proc in self._uml.items():
            if proc.poll() is not None:
                console = self._console(self.switch(name))
                raise FabricError(
                    f"UML {name} exited {proc.returncode}; {console}:\n{uml.console_tail(console)}"
                )

    def _routing_ready(self, switch: SwitchPlan) -> bool:
        if not frr.sessions_established(
            switch, self.vtysh_json(switch.name, "show bgp summary json")
        ):
            return False
        if switch.role != "leaf":
            return True
        routes = json.loads(self.switch_exec(switch.name, "ip", "-j", "route", "show") or "[]")
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
            vtysh_socket_dir=uml.FRR_RUN_DIR if switch.kind == "uml" else switch.runtime_dir,
            access_ports=switch.access_ports,
        )

    def _credentials(self) -> sshd.Credentials:
        if self.credentials is None:
            raise FabricError("the fabric is not up")
        return self.credentials

    def _kind(self, kind: str) -> list[SwitchPlan]:
        return [s for s in self.topology.switches if s.kind == kind]

    def _console(self, switch: SwitchPlan) -> Path:
        return self.state_dir / f"uml-{switch.name}.log"

    def _shell(self, name: str) -> RemoteShell:
        """The lab's own SSH login to a UML leaf (kept open)."""
        shell = self._remote.get(name)
        if shell is None:
            a = self.access(name)
            shell = self._remote[name] = RemoteShell(
                a.host, a.port, a.username, a.key_file, a.known_hosts
            )
        return shell

    def switch_exec(self, name: str, *argv: str) -> str:
        """A command on a switch: in its namespace, out of band (not over its SSH); on a UML
        leaf, over the lab's own SSH login (no other way in)."""
        switch = self.switch(name)
        if switch.kind == "uml":
            return self._shell(name).run(argv)
        return run(in_netns(switch.netns, *argv))

    def switch_links(self, name: str) -> list[dict[str, Any]]:
        return json.loads(self.switch_exec(name, "ip", "-d", "-j", "link", "show") or "[]")

    def drop_ssh_sessions(self, name: str) -> int:
        """Kill the SSH sessions open on a switch (not its listener); how many there were.
        On a UML leaf, the lab's own login that does it stays (and is not counted)."""
        if self.switch(name).kind == "uml":
            return int(self._shell(name).script(uml.DROP_SESSIONS))
        listener = read_pid(self.state_dir / f"sshd-{name}.pid")
        sessions = [p for p in netns_pids(self.switch(name).netns) if parent_pid(p) == listener]
        stop_pids(sessions)
        return len(sessions)

    def vtysh(self, name: str, command: str) -> str:
        switch = self.switch(name)
        if switch.kind == "uml":  # a plain vtysh there finds the switch's FRR
            return self.switch_exec(name, frr.VTYSH, "-H", "/dev/null", "-c", command)
        return frr.vtysh(switch, command)

    def vtysh_json(self, name: str, command: str) -> Any:
        return json.loads(self.vtysh(name, command) or "{}")

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


__all__ = ["HOST_IFNAME", "Fabric", "FabricConfig", "FabricError", "SwitchAccess", "teardown"]
