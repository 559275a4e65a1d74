"""Commands, namespaces and processes of the fabric (iproute2 and /proc, as root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from lab.fabric.topology import FabricError

NETNS_DIR = Path("/run/netns")


def run(argv: Sequence[str], *, input: str | None = None, timeout: float = 30) -> str:
    """Run a command; its stdout, or FabricError with its stderr."""
    result = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise FabricError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def ip_batch(lines: Iterable[str], netns: str | None = None) -> None:
    """Several iproute2 commands in one process (`ip -batch`), stopping at the first error."""
    text = "\n".join(lines)
    if text:
        run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input=text + "\n")


def in_netns(netns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def namespaces(prefix: str) -> list[str]:
    """The network namespaces of a fabric prefix."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(f"{prefix}-"))


def root_links(prefix: str) -> list[str]:
    links = json.loads(run(["ip", "-j", "link", "show"]) or "[]")
    return sorted(x["ifname"] for x in links if x["ifname"].startswith(f"{prefix}-"))


def netns_pids(netns: str) -> list[int]:
    try:
        return [int(p) for p in run(["ip", "netns", "pids", netns]).split()]
    except FabricError:
        return []


def owned_pid(pid: int, markers: Sequence[str]) -> bool:
    """Whether a recorded PID still is one of ours (its command line names our paths): a
    PID recorded before a crash may have been reused by another process since."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return any(marker in cmdline for marker in markers)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def stop_pids(pids: Iterable[int], timeout: float = 3.0) -> None:
    """SIGTERM, then SIGKILL whatever still runs after `timeout`; reap our own children."""
    pending = {p for p in pids if p > 1 and p != os.getpid()}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pending:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            _reap(pending)
            pending = {p for p in pending if alive(p)}
            if pending:
                time.sleep(0.02)
        if not pending:
            return
    if pending:
        raise FabricError(f"processes {sorted(pending)} survived SIGKILL")


def _reap(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child: init reaps it


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
