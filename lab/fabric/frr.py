"""FRR per switch: zebra and bgpd in the switch's namespace, iBGP with the spines as route
reflectors (IPv4 unicast for the loopbacks, L2VPN EVPN; leaves `advertise-all-vni`).

iBGP keeps the EVPN next hop (the VTEP) untouched on its way through the spines; for the
loopback routes the spines set themselves as next hop, as leaves share no link.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from lab.fabric.system import in_netns, read_pid, run
from lab.fabric.topology import FabricError, SwitchPlan, Topology

DAEMONS = Path("/usr/lib/frr")
VTYSH = "vtysh"


def zebra_conf(switch: SwitchPlan) -> str:
    return f"hostname {switch.name}\nlog file {switch.runtime_dir}/zebra.log informational\n"


def bgpd_conf(switch: SwitchPlan, topology: Topology) -> str:
    group = "LEAVES" if switch.role == "spine" else "SPINES"
    lines = [
        "frr defaults datacenter",
        f"hostname {switch.name}",
        f"log file {switch.runtime_dir}/bgpd.log informational",
        "!",
        f"router bgp {topology.asn}",
        f" bgp router-id {switch.loopback}",
        " coalesce-time 10",  # the default holds the first updates back by a second
        " no bgp default ipv4-unicast",
        f" neighbor {group} peer-group",
        f" neighbor {group} remote-as {topology.asn}",
        f" neighbor {group} timers connect 1",  # a peer not up yet is retried within 1 s
        *(f" neighbor {u.peer_address} peer-group {group}" for u in switch.underlay),
        " address-family ipv4 unicast",
        f"  network {switch.loopback}/32",
        f"  neighbor {group} activate",
    ]
    if switch.role == "spine":
        lines += [
            f"  neighbor {group} route-reflector-client",
            f"  neighbor {group} next-hop-self force",
        ]
    else:
        lines.append("  maximum-paths ibgp 16")
    lines += [" exit-address-family", " address-family l2vpn evpn", f"  neighbor {group} activate"]
    if switch.role == "spine":
        lines.append(f"  neighbor {group} route-reflector-client")
    else:
        lines.append("  advertise-all-vni")
    lines += [" exit-address-family", "!"]
    return "\n".join(lines) + "\n"


def prepare(switch: SwitchPlan, topology: Topology) -> None:
    """The runtime dir with both configurations, owned by frr (the daemons drop to it)."""
    directory = Path(switch.runtime_dir)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for parent in (directory.parent, directory.parent.parent):  # traversable whatever the umask
        parent.chmod(0o755)
    (directory / "zebra.conf").write_text(zebra_conf(switch))
    (directory / "bgpd.conf").write_text(bgpd_conf(switch, topology))
    frr = pwd.getpwnam("frr")
    for path in (directory, *directory.iterdir()):
        os.chown(path, frr.pw_uid, frr.pw_gid)


def daemon_args(switch: SwitchPlan, daemon: str, run_dir: str | None = None) -> list[str]:
    """The daemon's command line: configuration from the runtime dir, pid file and sockets in
    `run_dir` (default: the runtime dir too; a UML leaf keeps them in its own /run/frr)."""
    d, r = switch.runtime_dir, run_dir or switch.runtime_dir
    extra = ["-p", "179"] if daemon == "bgpd" else []
    return [
        str(DAEMONS / daemon),
        "-d",
        "-A", "127.0.0.1", "-P", "0",  # no TCP vty
        *extra,
        "-f", f"{d}/{daemon}.conf",
        "-i", f"{r}/{daemon}.pid",
        "-z", f"{r}/zserv.api",
        "--vty_socket", r,
    ]  # fmt: skip


def daemon_command(switch: SwitchPlan, daemon: str) -> list[str]:
    return in_netns(switch.netns, *daemon_args(switch, daemon))


def start(switches: list[SwitchPlan], daemon: str) -> None:
    """Start one daemon on every switch at once; each forks away once it is initialized."""
    procs = [
        (s, subprocess.Popen(daemon_command(s, daemon), stderr=subprocess.PIPE, text=True))
        for s in switches
    ]
    failures = []
    for switch, proc in procs:
        _, err = proc.communicate(timeout=30)
        if proc.returncode != 0 or read_pid(Path(switch.runtime_dir) / f"{daemon}.pid") is None:
            failures.append(f"{switch.name} {daemon} exited {proc.returncode}: {err.strip()}")
    if failures:
        raise FabricError("; ".join(failures))


def pids(switch: SwitchPlan) -> list[int]:
    found = (read_pid(Path(switch.runtime_dir) / f"{d}.pid") for d in ("zebra", "bgpd"))
    return [p for p in found if p is not None]


def vtysh(switch: SwitchPlan, command: str) -> str:
    return run([VTYSH, "-H", "/dev/null", "--vty_socket", switch.runtime_dir, "-c", command])


def sessions_established(switch: SwitchPlan, summary: dict) -> bool:
    """Every configured peer is Established in both address families (`summary`: the
    switch's `show bgp summary json`)."""
    expected = {u.peer_address for u in switch.underlay}
    for family in ("ipv4Unicast", "l2VpnEvpn"):
        peers = summary.get(family, {}).get("peers", {})
        if set(peers) != expected or any(p.get("state") != "Established" for p in peers.values()):
            return False
    return True
