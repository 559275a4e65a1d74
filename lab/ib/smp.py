"""Subnet management queries into an ibsim fabric: infiniband-diags tools run under umad2sim.

`ibsim-run` preloads libumad2sim, which hands the tools' MADs to the ibsim instance named by
IBSIM_SOCKNAME instead of a /dev/infiniband device; the tool attaches at the first node of the
topology (a switch) and reaches ports by LID through the routes OpenSM programmed.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

FULL_MEMBER = 0x8000  # the membership bit of a PKey table entry; clear: limited member

_TABLE_ROW = re.compile(r"^\s*\d+:((?:\s+0x[0-9a-fA-F]{4})+)\s*$")
_SMINFO_STATE = re.compile(r"state\s+\d+\s+(SMINFO_\w+)")
# iblinkinfo, one line per CA port: "0x<port guid> <lid> <port>[  ] ==( ... Active/  LinkUp)==>"
_CA_LINK = re.compile(
    r"^\s*(0x[0-9a-fA-F]{16})\s+(\d+)\s+\d+\[[^\]]*\]\s+==\((.*?)(\w+)/\s*(\w+)\s*\)==>"
)


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class Link:
    lid: int
    state: str  # Down, Init, Armed, Active
    physical: str  # Polling, LinkUp, ...


def parse_pkey_table(text: str) -> list[int]:
    """`smpquery pkeys` output -> the table, entry by entry (0x0000: empty)."""
    table: list[int] = []
    for line in text.splitlines():
        match = _TABLE_ROW.match(line)
        if match:
            table.extend(int(entry, 16) for entry in match.group(1).split())
    if not table:
        raise LabError(f"no PKey table in smpquery output: {text[:200]!r}")
    return table


def pkey_entries(table: list[int]) -> set[int]:
    """The PKeys a port holds, each with its membership bit (0x8000 full)."""
    return {entry for entry in table if entry & 0x7FFF}


def parse_sminfo(text: str) -> str:
    match = _SMINFO_STATE.search(text)
    if match is None:
        raise LabError(f"no SM state in sminfo output: {text[:200]!r}")
    return match.group(1)


def parse_ca_links(text: str) -> dict[str, Link]:
    """iblinkinfo output -> the channel adapter ports, by port GUID."""
    links: dict[str, Link] = {}
    for line in text.splitlines():
        match = _CA_LINK.match(line)
        if match:
            guid, lid, _, state, physical = match.groups()
            links[guid.lower()] = Link(int(lid), state, physical)
    return links


@dataclass(frozen=True)
class SimClient:
    """Runs infiniband-diags tools against one ibsim instance."""

    sockname: str
    cwd: Path  # umad2sim keeps a fake sysfs in ./sys-<pid> while a tool runs

    def run(self, *args: str, timeout: float = 10.0) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SIM_HOST")}
        env["IBSIM_SOCKNAME"] = self.sockname
        try:
            done = subprocess.run(
                ["ibsim-run", *args],
                cwd=self.cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"{' '.join(args)}: no answer in {timeout}s") from None
        if done.returncode != 0:
            raise LabError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-300:]}")
        return done.stdout

    def pkey_table(self, lid: int) -> list[int]:
        return parse_pkey_table(self.run("smpquery", "pkeys", str(lid)))

    def sm_state(self) -> str:
        return parse_sminfo(self.run("sminfo"))

    def ca_links(self) -> dict[str, Link]:
        return parse_ca_links(self.run("iblinkinfo"))
