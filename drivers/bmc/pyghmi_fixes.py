"""A fix to pyghmi's process-wide I/O thread, for the IPMI driver and the lab's IPMI simulators.

pyghmi's I/O thread reads every socket after setting it non-blocking (`_io_recvfrom`), while
any thread sending on the same socket sets it blocking first (`_io_sendto`). When a send lands
between the two, the read blocks the I/O thread until a packet arrives on that one socket,
often never: every IPMI session of the process then stops (seen in the lab under a burst of
~200 logins: all its BMCs went silent; a thread dump showed the I/O thread in recvfrom).
"""

from __future__ import annotations

import socket
from typing import Any

from pyghmi.ipmi.private import session as ipmi_session


def _recvfrom_without_blocking(mysocket: Any, size: int) -> Any:
    sock = getattr(mysocket, "fd", mysocket)  # eventlet's wrapped socket, as pyghmi does
    try:
        return sock.recvfrom(size, socket.MSG_DONTWAIT)  # whatever the socket's mode
    except OSError:
        return None


def install() -> None:
    """Idempotent: pyghmi looks `_io_recvfrom` up at each call."""
    ipmi_session._io_recvfrom = _recvfrom_without_blocking
