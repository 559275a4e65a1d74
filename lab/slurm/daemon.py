"""Foreground daemons as children of the lab, and the record of their PIDs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

# Enter the node's network namespace with a fresh mount + UTS namespace, make the node's run
# dir its /run (configless slurmd and its munge socket use compiled-in /run paths) and set the
# hostname (slurmctld and NodeName expect it). Every step execs: the PID is the daemon's.
WRAP = 'mount --bind "$1" /run && hostname "$2" && shift 2 && exec "$@"'
DAEMONS = ("munged", "slurmctld", "slurmd")


def in_node(netns: str, run_dir: Path, hostname: str, *argv: str) -> list[str]:
    return [
        *("nsenter", f"--net=/run/netns/{netns}"),
        *("unshare", "--mount", "--uts", "--propagation", "private"),
        *("sh", "-c", WRAP, "sh", str(run_dir), hostname, *argv),
    ]


@dataclass
class Daemon:
    name: str
    proc: asyncio.subprocess.Process
    started: int  # /proc start time: tells our PID from a reused one

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    async def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, SIGKILL after `timeout`; idempotent. The exit status."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode


async def spawn(name: str, argv: list[str], out: Path) -> Daemon:
    with out.open("ab") as log:  # the child keeps its own descriptor
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
        )
    return Daemon(name, proc, start_time(proc.pid) or 0)


def start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def record(path: Path, daemons: dict[str, list[Daemon]]) -> None:
    """{node: [[name, pid, start time]]} of the running daemons, for `stop_recorded` after a
    crash of the lab (foreground children are then reparented, not stopped)."""
    data = {
        node: [[d.name, d.pid, d.started] for d in ds if d.running] for node, ds in daemons.items()
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def stop_recorded(path: Path) -> list[int]:
    """SIGKILL the daemons a crashed lab recorded (same comm and start time only). Their PIDs."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    killed = []
    for entries in data.values():
        for name, pid, started in entries:
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm == name and name in DAEMONS and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
    path.unlink(missing_ok=True)
    return killed
