"""Cisco NX-OS dialect: rendered commands against reviewed golden files, state parsed from
recorded `| json` outputs, and plans run by the Switch over a recording transport.

No NX-OS runs here: the golden files are reviewed against Cisco's VXLAN configuration guide, the
recorded outputs are modeled on the show command reference's JSON schemas
(tests/golden/switch/README.md). UPDATE_GOLDEN=1 rewrites the golden files instead of comparing
(review the diff before committing it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from drivers.switch import nxos
from drivers.switch.base import (
    AddSegment,
    AddVrf,
    Change,
    ClearAccessPort,
    InvalidChange,
    RemoveSegment,
    RemoveVrf,
    Segment,
    SetAccessPort,
    Switch,
    SwitchCommandFailed,
    SwitchError,
    SwitchState,
    Vrf,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "switch" / "nxos"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

SHOW_FILES = {
    nxos.SHOW_VRF: "show_vrf_all_detail.json",
    nxos.SHOW_NVE_VNI: "show_nve_vni_detail.json",
    nxos.SHOW_VRF_INTERFACE: "show_vrf_interface.json",
    nxos.SHOW_IP_INTERFACE: "show_ip_interface_vrf_all.json",
    nxos.SHOW_SWITCHPORT: "show_interface_switchport.json",
}

TENANT_A = Vrf("tenant-a", table=100, l3vni=50001, l3vlan=2001)
IRB = Segment(vlan=10, vni=10010, vrf="tenant-a", gateway="10.1.0.1/24")
L2 = Segment(vlan=20, vni=10020)
RECORDED = SwitchState(
    vrfs={"tenant-a": TENANT_A},
    segments={10: IRB, 20: L2},
    access_ports={"Ethernet1/1": 10, "Ethernet1/2": 10, "Ethernet1/5": 30},
)

CASES: list[tuple[str, Change]] = [
    ("add_vrf", AddVrf(TENANT_A)),
    ("remove_vrf", RemoveVrf(TENANT_A)),
    ("add_segment_irb", AddSegment(IRB)),
    ("add_segment_l2", AddSegment(L2)),
    ("remove_segment_irb", RemoveSegment(IRB)),
    ("remove_segment_l2", RemoveSegment(L2)),
    ("set_access_port", SetAccessPort("Ethernet1/7", 10)),
    ("clear_access_port", ClearAccessPort("Ethernet1/7", 10)),
]


def dialect(mcast_group: str | None = None) -> nxos.NxosDialect:
    return nxos.NxosDialect(asn=65021, router_id="10.0.0.21", mcast_group=mcast_group)


def recorded() -> dict[str, str]:
    return {command: (GOLDEN / "show" / name).read_text() for command, name in SHOW_FILES.items()}


def assert_golden(name: str, commands: Sequence[str]) -> None:
    path = GOLDEN / "render" / f"{name}.txt"
    text = "".join(f"{line}\n" for line in commands)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: write it with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs from {path} (UPDATE_GOLDEN=1 rewrites it)"


class RecordingTransport:
    """Test double for an NX-OS session: answers the state commands from recorded outputs and
    records each configuration batch; refuses a batch that contains the line `refuse`."""

    def __init__(self, outputs: Mapping[str, str], refuse: str | None = None) -> None:
        self.outputs = outputs
        self.refuse = refuse
        self.batches: list[list[str]] = []

    async def show(self, command: str) -> str:
        return self.outputs[command]

    async def configure(self, commands: Sequence[str]) -> None:
        self.batches.append(list(commands))
        if self.refuse in commands:
            raise SwitchCommandFailed(f"% Invalid input (at `{self.refuse}`)")

    async def close(self) -> None:
        return None


# Rendering.


@pytest.mark.parametrize(("name", "change"), CASES, ids=[name for name, _ in CASES])
def test_render_matches_golden(name: str, change: Change) -> None:
    assert_golden(name, dialect().render(change))


def test_every_change_type_has_a_golden_case() -> None:
    assert {type(change) for _, change in CASES} == set(Change.__args__)


def test_moving_a_port_renders_like_setting_it() -> None:
    d = dialect()
    assert d.render(SetAccessPort("Ethernet1/7", 20, previous=10)) == d.render(
        SetAccessPort("Ethernet1/7", 20)
    )


def test_every_mode_is_left_back_to_global_configuration() -> None:
    """Each change leaves the session in global configuration mode: every mode it enters is
    left by `exit` (a `vlan` or `vni` line must not land in the mode the last change ended in;
    NX-OS also applies `vn-segment` only when its VLAN mode is left)."""
    for _, change in CASES:
        lines = dialect().render(change)
        depth = 0
        for line, following in zip(lines, [*lines[1:], ""], strict=True):
            level = (len(line) - len(line.lstrip(" "))) // len(nxos.INDENT)
            assert level == depth, f"{change}: {line!r}"
            if line.strip() == "exit":
                depth -= 1
            elif len(following) - len(following.lstrip(" ")) > len(line) - len(line.lstrip(" ")):
                depth += 1
        assert depth == 0, change


@pytest.mark.parametrize(
    "change",
    [
        AddVrf(Vrf("tenant a", 1, 50001, 2001)),  # a space would split the command
        AddVrf(Vrf("t\nno router bgp 65021", 1, 50001, 2001)),
        AddVrf(Vrf("tenant-a", 70000, 50001, 2001)),  # RD index beyond 16 bits
        AddSegment(Segment(1, 10001)),  # VLAN 1 is where unassigned ports are
        AddSegment(Segment(10, 2**24)),
        AddSegment(Segment(10, 10010, "tenant-a", "10.1.0.0/24")),  # the subnet, not a host
        AddSegment(Segment(10, 10010, "tenant-a", "10.1.0.1")),  # no prefix length
        SetAccessPort("Ethernet1/1 ; reload", 10),
    ],
)
def test_render_refuses_values_that_would_break_the_cli(change: Change) -> None:
    with pytest.raises(InvalidChange):
        dialect().render(change)


def test_l2_vnis_flood_by_ingress_replication_or_a_multicast_group() -> None:
    """Ingress replication with BGP by default (golden files); a multicast group on request."""
    rendered = dialect(mcast_group="239.1.1.1").render(AddSegment(L2))
    assert "    mcast-group 239.1.1.1" in rendered
    assert not any("ingress-replication" in line for line in rendered)
    with pytest.raises(ValueError):
        dialect(mcast_group="10.1.1.1")


# Reading.


def test_state_commands_are_the_recorded_ones() -> None:
    assert set(dialect().state_commands()) == set(SHOW_FILES)


def test_parse_state_of_recorded_outputs() -> None:
    """Dynamic VLANs, the default and management VRFs, a VLAN without VNI (30, whose port
    still counts as an access port) and ports in VLAN 1 or trunks are not tenant state."""
    assert dialect().parse_state(recorded()) == RECORDED


def test_parse_state_leaves_out_a_half_made_vrf() -> None:
    outputs = recorded()
    vnis = json.loads(outputs[nxos.SHOW_NVE_VNI])
    vnis["TABLE_nve_vni"]["ROW_nve_vni"].pop()  # `member vni 50001 associate-vrf` not there yet
    outputs[nxos.SHOW_NVE_VNI] = json.dumps(vnis)
    state = nxos.NxosDialect(asn=65021, router_id="10.0.0.21").parse_state(outputs)
    assert state.vrfs == {} and state.segments == RECORDED.segments


def test_parse_state_reads_only_rds_of_this_router() -> None:
    other = nxos.NxosDialect(asn=65021, router_id="10.0.0.22")
    assert other.parse_state(recorded()).vrfs == {}


def test_parse_state_of_empty_tables() -> None:
    """NX-OS prints nothing at all for a table without rows."""
    outputs = dict.fromkeys(SHOW_FILES, "")
    assert dialect().parse_state(outputs) == SwitchState()


def test_parse_state_of_one_row_tables_and_one_table_per_command() -> None:
    """One row is printed as an object instead of a list of one; `show ip interface vrf all`
    may print one table or a list of them."""
    outputs = recorded()
    ports = json.loads(outputs[nxos.SHOW_SWITCHPORT])
    rows = ports["TABLE_interface"]["ROW_interface"]
    ports["TABLE_interface"]["ROW_interface"] = rows[0]
    outputs[nxos.SHOW_SWITCHPORT] = json.dumps(ports)
    addresses = json.loads(outputs[nxos.SHOW_IP_INTERFACE])
    addresses["TABLE_intf"] = {"ROW_intf": [t["ROW_intf"] for t in addresses["TABLE_intf"]]}
    outputs[nxos.SHOW_IP_INTERFACE] = json.dumps(addresses)
    state = dialect().parse_state(outputs)
    assert state.access_ports == {"Ethernet1/1": 10}
    assert state.segments == RECORDED.segments


def test_parse_state_counts_an_access_port_whose_link_is_down() -> None:
    """Whatever operational mode a down link shows, its access VLAN still holds it."""
    outputs = recorded()
    ports = json.loads(outputs[nxos.SHOW_SWITCHPORT])
    ports["TABLE_interface"]["ROW_interface"][0]["oper_mode"] = "down"
    outputs[nxos.SHOW_SWITCHPORT] = json.dumps(ports)
    assert dialect().parse_state(outputs).access_ports == RECORDED.access_ports


def test_parse_state_refuses_output_that_is_not_json() -> None:
    outputs = recorded()
    outputs[nxos.SHOW_NVE_VNI] = "                 ^\n% Invalid command at '^' marker."
    with pytest.raises(SwitchError) as raised:
        dialect().parse_state(outputs)
    assert not raised.value.retryable and "Invalid command" in str(raised.value)


def test_parse_state_refuses_unexpected_shapes() -> None:
    outputs = recorded()
    outputs[nxos.SHOW_NVE_VNI] = json.dumps({"TABLE_nve_vni": {"ROW_nve_vni": ["nve1"]}})
    with pytest.raises(SwitchError):
        dialect().parse_state(outputs)


# Plans over the Switch.


async def test_nothing_is_configured_when_the_switch_already_matches() -> None:
    transport = RecordingTransport(recorded())
    switch = Switch("leaf21", dialect(), transport)
    assert await switch.state() == RECORDED
    assert await switch.ensure_vrf(TENANT_A) == []
    assert await switch.ensure_segment(IRB) == []
    assert await switch.ensure_segment(L2) == []
    assert await switch.set_access_port("Ethernet1/1", 10) == []
    assert await switch.clear_access_port("Ethernet1/3") == []  # in VLAN 1: nothing to clear
    assert await switch.remove_vrf("tenant-b") == []
    assert transport.batches == []


async def test_a_new_segment_is_one_batch() -> None:
    transport = RecordingTransport(recorded())
    segment = Segment(11, 10011, "tenant-a", "10.1.1.1/24")
    assert await Switch("leaf21", dialect(), transport).ensure_segment(segment) == [
        AddSegment(segment)
    ]
    assert transport.batches == [dialect().render(AddSegment(segment))]


async def test_a_refused_command_rolls_the_operation_back_newest_first() -> None:
    d = dialect()
    transport = RecordingTransport(recorded(), refuse="no vlan 10")
    with pytest.raises(SwitchCommandFailed):
        await Switch("leaf21", d, transport).remove_segment(10)
    done = [
        ClearAccessPort("Ethernet1/1", 10),
        ClearAccessPort("Ethernet1/2", 10),
        RemoveSegment(IRB),
    ]
    undone = [AddSegment(IRB), SetAccessPort("Ethernet1/2", 10), SetAccessPort("Ethernet1/1", 10)]
    assert transport.batches == [d.render(change) for change in done + undone]


async def test_a_refused_first_change_is_undone_alone() -> None:
    d = dialect()
    vrf = Vrf("tenant-b", table=101, l3vni=50002, l3vlan=2002)
    transport = RecordingTransport(recorded(), refuse="  member vni 50002 associate-vrf")
    with pytest.raises(SwitchCommandFailed):
        await Switch("leaf21", d, transport).ensure_vrf(vrf)
    assert transport.batches == [d.render(AddVrf(vrf)), d.render(RemoveVrf(vrf))]
