"""What the Arista EOS and Cisco NX-OS dialects share: configuration modes, checked values and
reading `show ... | json` output."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any

from drivers.switch.base import InvalidChange, SwitchError

DEFAULT_VLAN = 1  # where a port without an access VLAN is; never a tenant segment
MAX_VNI = 2**24 - 1
# One CLI word: a name that cannot end a command early or start another one.
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}")


def mode(indent: str, head: str, *body: str) -> list[str]:
    """A configuration mode: its command, its own commands indented, then `exit` to the parent.

    Every mode is left explicitly, so that a change means the same whatever mode the session
    was in before it (EOS `router bgp` has `vlan` and `vrf` sub-modes of its own)."""
    return [head, *(indent + line for line in body), indent + "exit"]


def word(value: str, what: str) -> str:
    """A name that goes into a command line as one word (no spaces, newlines or `!`)."""
    if not _WORD.fullmatch(value):
        raise InvalidChange(f"{what} {value!r} is not a plain CLI word")
    return value


def vlan_id(vlan: int) -> int:
    if not 2 <= vlan <= 4094:  # VLAN 1 is the default VLAN, 4095 is reserved
        raise InvalidChange(f"VLAN {vlan} is outside 2-4094")
    return vlan


def vni(value: int) -> int:
    if not 1 <= value <= MAX_VNI:
        raise InvalidChange(f"VNI {value} is outside 1-{MAX_VNI}")
    return value


def gateway(address: str) -> str:
    """An anycast gateway `a.b.c.d/len`: a host address of its subnet, written canonically."""
    try:
        interface = ipaddress.IPv4Interface(address)
    except ValueError as exc:
        raise InvalidChange(f"gateway {address!r} is not an IPv4 address/length") from exc
    net = interface.network
    if "/" not in address or net.prefixlen > 30 or interface.ip in (net[0], net[-1]):
        raise InvalidChange(f"gateway {address!r} is not a host address of a /30 or larger")
    return str(interface)


def router_id(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError as exc:
        raise ValueError(f"router id {value!r} is not an IPv4 address") from exc


def asn(value: int) -> int:
    if not 1 <= value <= 2**32 - 1:
        raise ValueError(f"AS number {value} is outside 1-4294967295")
    return value


def route_distinguisher(router: str, index: int) -> str:
    """A type 1 RD (RFC 4364 4.2): the router id and a 2-octet index."""
    if not 0 <= index <= 0xFFFF:
        raise InvalidChange(f"route distinguisher index {index} does not fit in 16 bits")
    return f"{router}:{index}"


def rd_index(rd: str, router: str) -> int | None:
    """The index of an RD `router:index` of this router; None for any other RD."""
    admin, sep, index = rd.strip().rpartition(":")
    if sep and admin == router and index.isdigit():
        return int(index)
    return None


def route_target(as_number: int, value: int) -> str:
    """`ASN:VNI`, the same on every switch of the fabric (RFC 4360: a 2-octet AS with a
    4-octet value, or a 4-octet AS with a 2-octet value)."""
    if as_number > 0xFFFF and value > 0xFFFF:
        raise InvalidChange(f"route target {as_number}:{value}: a 4-octet AS takes a 16-bit value")
    return f"{as_number}:{value}"


def load_json(outputs: Mapping[str, str], command: str, *, empty: bool = False) -> dict[str, Any]:
    """The object a `| json` command printed. `empty`: an empty output means an empty object
    (NX-OS prints nothing for a table without rows)."""
    text = outputs[command].strip()
    if not text and empty:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        said = " ".join(text.split())[:200] or "(no output)"  # errors span lines (`^` marker)
        raise SwitchError(f"`{command}` did not answer JSON: {said}", retryable=False) from None
    if not isinstance(data, dict):
        raise SwitchError(f"`{command}` answered a {type(data).__name__}", retryable=False)
    return data


def number(value: Any) -> int | None:
    """An integer the NOS may print as a number or as a string ("n/a" and the like: None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
