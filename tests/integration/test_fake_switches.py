"""The EOS and NX-OS dialects' VLAN, SVI and access-port commands against fake-switches, a
stateful Cisco/Arista CLI over SSH, driven by netmiko, and read back from the fake's CLI.

fake-switches 1.5.0 models neither VXLAN nor EVPN nor BGP (no `interface Vxlan1` or `nve1`,
no `vxlan`, `vn-segment`, `evpn`, `router bgp`, `vrf instance`, `vrf context`): those commands
are not sent, and nothing here shows that a real EOS or NX-OS takes them (the golden files of
the unit tests are what checks them, against the vendors' documentation). Each test states the
exact lines it leaves out. Lines the fake would swallow without modeling them (it ignores
unknown `ip ...` words, so `ip forward` "passes") are left out too: only what the fake keeps
and shows again counts.

- Arista model: VLANs (with names) and SVIs. It has no `switchport mode access` (trunk only)
  nor `switchport access vlan`, no `vrf` on an interface, and `ip address virtual` crashes its
  session; so the EOS access-port commands are shown refused, not accepted.
- Cisco model: IOS (Catalyst 2960), not NX-OS. VLANs, SVIs and access ports are the same
  commands on both and are all taken; an SVI's VRF is IOS `ip vrf forwarding` there, not
  NX-OS `vrf member`, and its address IOS `ip address A MASK`, not `A/LEN`.

Each fake runs as a subprocess on a pinned port, stopped by its PID.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from netmiko import BaseConnection, ConnectHandler
from netmiko.arista.arista import AristaSSH
from netmiko.exceptions import ConfigInvalidException

from drivers.switch.base import (
    AddSegment,
    AddVrf,
    ClearAccessPort,
    RemoveSegment,
    RemoveVrf,
    Segment,
    SetAccessPort,
    Vrf,
)
from drivers.switch.eos import EosDialect
from drivers.switch.nxos import NxosDialect

ARISTA_PORT = 18740
CISCO_PORT = 18741
USER, PASSWORD = "admin", "fake-secret"
INSTALL = "pip install --no-deps fake-switches==1.5.0 'twisted[conch]' netaddr lxml tftpy"

# The fake's own launcher (fake-switches' CLI entry point) cannot name the ports; NX-OS-style
# names on the Cisco model keep the dialect's interface names as they are.
LAUNCHER = """
import sys
from twisted.internet import reactor
from fake_switches.switch_configuration import Port
from fake_switches.switch_factory import SwitchFactory
from fake_switches.transports.ssh_service import SwitchSshService

model, port, user, password, *ports = sys.argv[1:]
core = SwitchFactory().get(model, "leaf", password, ports=[Port(name) for name in ports])
service = SwitchSshService("127.0.0.1", int(port), core, {user: password.encode()})
service.hook_to_reactor(reactor)
print("listening", flush=True)
reactor.run()
"""

VRF = Vrf("tenant-a", table=100, l3vni=50001, l3vlan=2001)
IRB = Segment(vlan=10, vni=10010, vrf="tenant-a", gateway="10.1.0.1/24")


@contextmanager
def fake_switch(model: str, port: int, ports: list[str], logs: Path) -> Iterator[None]:
    if listening(port):  # anything else there would answer in its place
        raise RuntimeError(f"127.0.0.1:{port} is already in use")
    log = (logs / f"{model}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, model, str(port), USER, PASSWORD, *ports],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                output = (logs / f"{model}.log").read_text()
                hint = f" ({INSTALL})" if "No module named" in output else ""
                raise RuntimeError(f"fake-switches {model} exited{hint}:\n{output}")
            if listening(port):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"fake-switches {model} not listening on {port}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()  # by its PID; Twisted stops its reactor on SIGTERM
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def arista(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    logs = tmp_path_factory.mktemp("fake-arista")
    with fake_switch("arista_generic", ARISTA_PORT, ["Ethernet1", "Ethernet2"], logs):
        yield


@pytest.fixture(scope="module")
def cisco(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    logs = tmp_path_factory.mktemp("fake-cisco")
    with fake_switch("cisco_generic", CISCO_PORT, ["Ethernet1/1", "Ethernet1/2"], logs):
        yield


class FakeSwitchesArista(AristaSSH):
    """netmiko's arista_eos without `terminal width`, which fake-switches does not implement
    (netmiko would wait for "Width set to" until it times out)."""

    def session_preparation(self) -> None:
        self._test_channel_read(pattern=self.prompt_pattern)
        self.set_base_prompt()


@contextmanager
def session(vendor: str) -> Iterator[BaseConnection]:
    login = {"host": "127.0.0.1", "username": USER, "password": PASSWORD, "secret": PASSWORD}
    if vendor == "arista":
        conn: BaseConnection = FakeSwitchesArista(port=ARISTA_PORT, **login)
    else:
        conn = ConnectHandler(device_type="cisco_nxos", port=CISCO_PORT, **login)
    try:
        conn.enable()
        yield conn
    finally:
        conn.disconnect()


def configure(vendor: str, commands: list[str], error_pattern: str) -> None:
    """The commands in configuration mode, each one's answer checked against `error_pattern`.
    fake-switches has no `end`: configuration mode is left by `exit`."""
    with session(vendor) as conn:
        conn.send_config_set(commands, exit_config_mode=False, error_pattern=error_pattern)
        conn.exit_config_mode(exit_config="exit")


def show(vendor: str, command: str) -> str:
    with session(vendor) as conn:
        return conn.send_command(command)


def split(
    commands: list[str], block_taken: Callable[[str], bool], line_taken: Callable[[str], bool]
) -> tuple[list[str], list[str]]:
    """(sent, left out): whole global blocks (a command and the lines indented under it) the
    fake models, less the lines inside them it does not."""
    blocks: list[list[str]] = []
    for line in commands:
        if line.startswith(" "):
            blocks[-1].append(line)
        else:
            blocks.append([line])
    sent: list[str] = []
    left: list[str] = []
    for head, *body in blocks:
        if not block_taken(head):
            left += [head, *body]
            continue
        sent.append(head)
        for line in body:
            (sent if line.strip() == "exit" or line_taken(line.strip()) else left).append(line)
    return sent, left


def vlan_rows(text: str) -> dict[int, str]:
    """`show vlan` rows of either fake: VLAN id -> the rest of the row."""
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"^(\d+)\s+(\S.*)$", text, re.MULTILINE)
        if "enet" not in m.group(2)  # the Cisco fake's second table (type, SAID, MTU)
    }


# Arista EOS dialect on the Arista model.

EOS = EosDialect(asn=65011, router_id="10.0.0.11")
EOS_ERRORS = EOS.error_pattern


def eos_blocks(head: str) -> bool:
    return head.startswith(("vlan ", "interface Vlan", "no vlan ", "no interface Vlan"))


def eos_lines(line: str) -> bool:
    return line.startswith("name ")  # the fake's SVI keeps neither `vrf` nor `ip address virtual`


def test_eos_vlans_and_svis_are_kept_by_the_arista_model(arista: None) -> None:
    sent, left = split(EOS.render(AddVrf(VRF)), eos_blocks, eos_lines)
    assert sent == ["vlan 2001", "   name l3vni-50001", "   exit"]
    assert left[0] == "vrf instance tenant-a" and "ip routing vrf tenant-a" in left
    configure("arista", sent, EOS_ERRORS)

    sent, left = split(EOS.render(AddSegment(IRB)), eos_blocks, eos_lines)
    assert sent == ["vlan 10", "   exit", "interface Vlan10", "   exit"]
    assert [line.strip() for line in left if line.startswith("   ") and "exit" not in line] == [
        "vxlan vlan 10 vni 10010",
        "vlan 10",
        "rd auto",
        "route-target both 65011:10010",
        "redistribute learned",
        "vrf tenant-a",
        "ip address virtual 10.1.0.1/24",
    ]
    configure("arista", sent, EOS_ERRORS)

    vlans = vlan_rows(show("arista", "show vlan"))
    assert vlans[2001].split()[:2] == ["l3vni-50001", "active"]
    assert vlans[10].split()[:2] == ["VLAN0010", "active"]
    assert show("arista", "show running-config interfaces Vlan10").strip() == "interface Vlan10"

    sent, _ = split(EOS.render(RemoveSegment(IRB)), eos_blocks, eos_lines)
    assert sent == ["no interface Vlan10", "no vlan 10"]
    configure("arista", sent, EOS_ERRORS)
    sent, _ = split(EOS.render(RemoveVrf(VRF)), eos_blocks, eos_lines)
    assert sent == ["no vlan 2001"]
    configure("arista", sent, EOS_ERRORS)

    assert set(vlan_rows(show("arista", "show vlan"))) == {1}
    assert show("arista", "show running-config interfaces Vlan10").strip() == ""


def test_eos_access_port_commands_are_beyond_the_arista_model(arista: None) -> None:
    """The fake only has trunk ports: the dialect's first access-port line is refused (real EOS
    takes it). Should a release of fake-switches learn it, this fails: test it for real then."""
    commands = EOS.render(SetAccessPort("Ethernet1", 10))
    assert commands[1].strip() == "switchport mode access"
    with pytest.raises(ConfigInvalidException, match="Invalid input"):
        configure("arista", commands, EOS_ERRORS)


# Cisco NX-OS dialect on the Cisco (IOS) model.

NXOS = NxosDialect(asn=65021, router_id="10.0.0.21")
# The fake answers a command it does not know with "No such command : ...".
NXOS_ERRORS = f"{NXOS.error_pattern}|No such command"


def nxos_blocks(head: str) -> bool:
    return head.startswith(("vlan ", "interface ", "no vlan ", "no interface Vlan")) and (
        head != "interface nve1"
    )


def nxos_lines(line: str) -> bool:
    return line.startswith(("switchport", "no switchport", "no shutdown"))


def test_nxos_vlans_svis_and_access_ports_are_kept_by_the_cisco_model(cisco: None) -> None:
    sent, left = split(NXOS.render(AddVrf(VRF)), nxos_blocks, nxos_lines)
    assert sent == ["vlan 2001", "  exit", "interface Vlan2001", "  no shutdown", "  exit"]
    assert {"  vn-segment 50001", "  vrf member tenant-a", "  ip forward"} <= set(left)
    configure("cisco", sent, NXOS_ERRORS)

    sent, left = split(NXOS.render(AddSegment(IRB)), nxos_blocks, nxos_lines)
    assert sent == ["vlan 10", "  exit", "interface Vlan10", "  no shutdown", "  exit"]
    assert [line.strip() for line in left if line.startswith("  ") and "exit" not in line] == [
        "vn-segment 10010",
        "member vni 10010",
        "ingress-replication protocol bgp",
        "vni 10010 l2",
        "rd auto",
        "route-target import auto",
        "route-target export auto",
        "vrf member tenant-a",
        "ip address 10.1.0.1/24",
        "fabric forwarding mode anycast-gateway",
    ]
    configure("cisco", sent, NXOS_ERRORS)

    # Access ports: the dialect's commands as they are (the bare `switchport`, which turns a
    # routed NX-OS port into a switch port, is a no-op on the fake).
    for change in (
        SetAccessPort("Ethernet1/1", 10),
        SetAccessPort("Ethernet1/2", 10),
        SetAccessPort("Ethernet1/2", 2001, previous=10),
    ):
        sent, left = split(NXOS.render(change), nxos_blocks, nxos_lines)
        assert left == []
        configure("cisco", sent, NXOS_ERRORS)

    vlans = vlan_rows(show("cisco", "show vlan"))
    assert vlans[10].split() == ["VLAN10", "active", "Et1/1"]
    assert vlans[2001].split() == ["VLAN2001", "active", "Et1/2"]
    running = show("cisco", "show running-config interface Ethernet1/1")
    assert " switchport access vlan 10\n switchport mode access\n" in running
    assert "interface Vlan10\n" in show("cisco", "show running-config interface Vlan10")

    for change in (ClearAccessPort("Ethernet1/1", 10), ClearAccessPort("Ethernet1/2", 2001)):
        sent, left = split(NXOS.render(change), nxos_blocks, nxos_lines)
        assert left == []
        configure("cisco", sent, NXOS_ERRORS)
    running = show("cisco", "show running-config interface Ethernet1/1")
    assert "switchport access vlan" not in running and " switchport mode access\n" in running
    assert vlan_rows(show("cisco", "show vlan"))[1].split() == [
        "default",
        "active",
        "Et1/1,",
        "Et1/2",
    ]

    sent, _ = split(NXOS.render(RemoveSegment(IRB)), nxos_blocks, nxos_lines)
    assert sent == ["no interface Vlan10", "no vlan 10"]
    configure("cisco", sent, NXOS_ERRORS)
    sent, _ = split(NXOS.render(RemoveVrf(VRF)), nxos_blocks, nxos_lines)
    assert sent == ["no interface Vlan2001", "no vlan 2001"]
    configure("cisco", sent, NXOS_ERRORS)

    assert set(vlan_rows(show("cisco", "show vlan"))) == {1}
    assert "Invalid input" in show("cisco", "show running-config interface Vlan10")


def test_nxos_svi_vrf_is_not_the_cisco_models_syntax(cisco: None) -> None:
    """The fake keeps an SVI's VRF only in IOS syntax (`ip vrf forwarding`): NX-OS
    `vrf member` is refused. Should a release of fake-switches learn it, this fails."""
    commands = ["interface Vlan30", "  vrf member tenant-a", "  exit"]
    assert commands[1] in NXOS.render(AddSegment(Segment(30, 10030, "tenant-a")))
    try:
        with pytest.raises(ConfigInvalidException, match="No such command"):
            configure("cisco", commands, NXOS_ERRORS)
    finally:
        configure("cisco", ["no interface Vlan30"], NXOS_ERRORS)
