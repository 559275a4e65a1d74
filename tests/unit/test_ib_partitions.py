"""partitions.conf parsing and rendering (the OpenSM backend's view of its file), and the lab's
parsers of infiniband-diags output, on text captured from OpenSM 3.3.23 / ibsim 0.10 runs."""

from __future__ import annotations

import pytest

from drivers.infiniband.base import InvalidPartition, Member, Membership
from drivers.infiniband.opensm import (
    DEFAULT_PARTITION,
    ConfPartition,
    PartitionsConf,
    check_name,
    parse_partitions_conf,
    render_partitions_conf,
)
from lab.ib.smp import Link, parse_ca_links, parse_pkey_table, parse_sminfo, pkey_entries
from lab.ib.subnet import build_topology

A = "0x0002c90300000011"
B = "0x0002c90300000021"
C = "0x0002c90300000031"

FULL, LIMITED = Membership.FULL, Membership.LIMITED


def test_parses_statements_comments_and_memberships() -> None:
    text = """
    # an operator's comment
    Default=0x7fff, ipoib : ALL=full ;   # trailing comment
    tenant-a = 0x0101 , ipoib, mtu=5, defmember=full :
        0x0002c90300000011,               # defmember applies: full
        0x0002C90300000021 = limited ;
    tenant-b=0x0102 : 0x2c90300000031 ;   # no defmember: limited, as OpenSM reads it
    """
    conf = parse_partitions_conf(text)
    assert conf.default == "Default=0x7fff, ipoib : ALL=full ;"
    assert conf.partitions == {
        0x0101: ConfPartition(
            0x0101, "tenant-a", ("ipoib", "mtu=5"), frozenset({Member(A, FULL), Member(B, LIMITED)})
        ),
        0x0102: ConfPartition(0x0102, "tenant-b", (), frozenset({Member(C, LIMITED)})),
    }


def test_render_is_one_sorted_line_per_partition_and_round_trips() -> None:
    conf = PartitionsConf(
        DEFAULT_PARTITION,
        {
            0x0102: ConfPartition(0x0102, "tenant-b", ("ipoib",), frozenset()),
            0x0101: ConfPartition(
                0x0101, "tenant-a", ("ipoib",), frozenset({Member(B, LIMITED), Member(A, FULL)})
            ),
        },
    )
    text = render_partitions_conf(conf)
    statements = [line for line in text.splitlines() if not line.startswith("#")]
    assert statements == [
        "Default=0x7fff, ipoib : ALL=full ;",
        f"tenant-a=0x0101, ipoib : {A}=full, {B}=limited ;",
        "tenant-b=0x0102, ipoib : ;",
    ]
    assert parse_partitions_conf(text) == conf
    assert render_partitions_conf(parse_partitions_conf(text)) == text


def test_default_statement_is_kept_verbatim() -> None:
    default = "Default=0x7fff, ipoib, rate=7 : ALL=limited, SELF=full ;"
    conf = parse_partitions_conf(f"{default}\nt=0x0005 : {A}=full ;\n")
    assert conf.default == default
    assert render_partitions_conf(conf).splitlines()[2] == default
    # A multicast group line ends at its newline, so the ';' stays on the next line.
    default = "Default=0x7fff, ipoib : ALL=full,\n  mgid=ff12:401b::1,sl=1\n;"
    conf = parse_partitions_conf(default + "  # comment\n")
    assert conf.default == default
    assert default in render_partitions_conf(conf)


def test_missing_default_statement_takes_the_configured_one() -> None:
    assert parse_partitions_conf("").default == DEFAULT_PARTITION
    assert parse_partitions_conf("", default="Default=0x7fff : ALL ;").default == (
        "Default=0x7fff : ALL ;"
    )
    conf = parse_partitions_conf(f"t=0x0005 : {A}=full ;")
    assert conf.default == DEFAULT_PARTITION
    assert list(conf.partitions) == [5]


def test_statements_of_one_pkey_merge_under_the_first_name() -> None:
    conf = parse_partitions_conf(
        f"first=0x0007, ipoib : {A}=full ;\nsecond=0x0007, mtu=4 : {B}=limited, {A}=full ;"
    )
    assert conf.partitions == {
        7: ConfPartition(
            7, "first", ("ipoib", "mtu=4"), frozenset({Member(A, FULL), Member(B, LIMITED)})
        )
    }


def test_only_the_low_15_bits_are_the_pkey() -> None:
    assert list(parse_partitions_conf(f"t=0x8101 : {A}=full ;").partitions) == [0x0101]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (f"t=0x0005 : {A}=full", "without ';'"),
        ("t=0x0005 ;", "no ':'"),
        (f"anonymous : {A}=full ;", "has no valid PKey"),
        (f"zero=0x8000 : {A}=full ;", "has no valid PKey"),
        (f"t=0x0005 : {A}=both ;", "not full or limited"),
        ("t=0x0005, defmember=both : ;", "not full or limited"),
        ("t=0x0005 : ALL=full ;", "is not a port"),
        ("t=0x0005 : SELF ;", "is not a port"),
        ("t=0x0005 : mgid=ff12:401b::ffff:ffff ;", "is not a port"),
        (f"t=0x0005 : {A}=full, {A}=limited ;", "listed twice"),
        (f"t=0x0005 : {A}=full ;\nu=0x0005 : {A}=limited ;", "listed twice"),
        ("t=0xzz : ;", "is no number"),
        ("t=0x0005 : 0x1ffffffffffffffff ;", "out of range"),
    ],
)
def test_statements_it_cannot_represent_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(InvalidPartition, match=complaint) as raised:
        parse_partitions_conf(text)
    assert raised.value.retryable is False


def test_names_must_survive_opensm_parser() -> None:
    assert check_name("tenant-a.prod_1") == "tenant-a.prod_1"
    for bad in ("", "a b", "a=b", "a,b", "a:b", "a;b", "a#b", "-a", "x" * 65):
        with pytest.raises(InvalidPartition):
            check_name(bad)


SMPQUERY_PKEYS = """\
   0: 0xffff 0x8101 0x0000 0x0000 0x0000 0x0000 0x0000 0x0000
   8: 0x0000 0x0000 0x0000 0x0000 0x0000 0x0000 0x0000 0x0102
  16: 0x0000 0x0000 0x0000 0x0000 0x0000 0x0000 0x0000 0x0000
64 pkeys capacity for this port
"""

IBLINKINFO = """\
CA: gpu-002:
      0x0002c90300000021      5    1[  ] ==( 4X           2.5 Gbps Active/  LinkUp)==>       3    1[  ] "sw2" (Could be 12X Could be 10.0 Gbps)
Switch: 0x0002c90300ff0002 sw2:
           3    1[  ] ==( 4X           2.5 Gbps Active/  LinkUp)==>       5    1[  ] "gpu-002" (Could be 12X Could be 10.0 Gbps)
           3    3[  ] ==(                Down/ Polling)==>             [  ] "" ( )
CA: gpu-001:
      0x0002c90300000011      0    1[  ] ==( 4X           2.5 Gbps Initialize/  LinkUp)==>       2    2[  ] "sw1" ( )
"""  # noqa: E501


def test_parses_smpquery_pkey_table() -> None:
    table = parse_pkey_table(SMPQUERY_PKEYS)
    assert len(table) == 24
    assert table[:2] == [0xFFFF, 0x8101] and table[15] == 0x0102
    assert pkey_entries(table) == {0xFFFF, 0x8101, 0x0102}


def test_parses_sminfo_and_iblinkinfo() -> None:
    text = "sminfo: sm lid 1 sm guid 0x2c90300000001, activity count 131 priority 0 state 3 "
    text += "SMINFO_MASTER"
    assert parse_sminfo(text) == "SMINFO_MASTER"
    assert parse_ca_links(IBLINKINFO) == {
        B: Link(5, "Active", "LinkUp"),
        A: Link(0, "Initialize", "LinkUp"),
    }


def test_topology_guids_and_cabling_are_deterministic() -> None:
    topology = build_topology(4, switches=2)
    assert [(p.node, p.port_guid, p.switch, p.switch_port) for p in topology.nodes] == [
        ("gpu-001", A, "sw1", 2),
        ("gpu-002", B, "sw2", 1),
        ("gpu-003", C, "sw1", 3),
        ("gpu-004", "0x0002c90300000041", "sw2", 2),
    ]
    assert topology.sm.port_guid == "0x0002c90300000001" and topology.sm.switch_port == 1
    text = topology.render()
    assert text == build_topology(4, switches=2).render()
    assert '[35]\t"sw2"[35]' in text and '[36]\t"sw1"[36]' in text
    assert 'caguid=0x0002c90300000010\nHca\t1 "gpu-001"\n[1]\t"sw1"[2]' in text
