"""Wake a UML kernel every few milliseconds with a SIGIO, for as long as it runs.

Debian's UML 6.1 loses wake-ups here: a frame that reaches an idle UML kernel can sit unread
until the next SIGIO from any of its devices, 0.3-1 s later, or be lost (measured on a UML
leaf: about one cross-leaf ping in ten late or lost; the kernel's timer tick does not help,
`nohz=off` changed nothing). A SIGIO makes the kernel poll all its devices, and a spurious one
costs it nothing: one every 10 ms bounds the delay (measured: none lost, none over 20 ms).

    python lab/fabric/uml_kick.py PIDFILE MARKER [INTERVAL]

Run as a script (not `-m`: no package import, a small process). It signals the process of
PIDFILE only if its command line holds MARKER, through a pidfd: never another process that
reuses the PID later. It exits when the kernel does (even before it is reaped).
"""

from __future__ import annotations

import os
import select
import signal
import sys
from pathlib import Path


def catches_sigio(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) >> (signal.SIGIO - 1) & 1)


def main(argv: list[str]) -> int:
    pid = int(Path(argv[0]).read_text().strip())
    marker, interval = argv[1], float(argv[2]) if len(argv) > 2 else 0.01
    try:
        pidfd = os.pidfd_open(pid)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (ProcessLookupError, FileNotFoundError):
        return 0  # the kernel is gone already
    if marker not in cmdline:
        print(f"uml_kick: {pid} is not the UML kernel ({cmdline[:80]!r})", file=sys.stderr)
        return 1
    # SIGIO's default action is to terminate: not before the kernel catches it.
    while not catches_sigio(pid):
        if select.select([pidfd], [], [], interval)[0]:
            return 0
    while True:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGIO)
        except ProcessLookupError:
            return 0
        if select.select([pidfd], [], [], interval)[0]:  # readable: the kernel exited
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
