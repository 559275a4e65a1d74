"""pyghmi's I/O thread must never block reading a socket another thread just set blocking."""

from __future__ import annotations

import socket
import threading

from pyghmi.ipmi.private import session as ipmi_session

import drivers.bmc.ipmi  # noqa: F401 - installs the fixes, as the driver's users get them


class SetBlockingByAnotherThread(socket.socket):
    """A socket whose mode another thread's send (pyghmi's _io_sendto) sets back to blocking
    right after the I/O thread made it non-blocking: here, that call simply does not stick."""

    def setblocking(self, flag: bool) -> None:
        super().setblocking(True)


def test_the_io_threads_read_of_an_idle_socket_returns_at_once() -> None:
    with SetBlockingByAnotherThread(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        found: list[object] = []
        reader = threading.Thread(
            target=lambda: found.append(ipmi_session._io_recvfrom(sock, 3000)), daemon=True
        )
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "the read blocked: every IPMI session would stop"
        assert found == [None]


def test_a_waiting_packet_is_read() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"\x06\x00\xff\x07", sock.getsockname())
        found = None
        for _ in range(100):  # loopback delivery is immediate, but not synchronous
            found = ipmi_session._io_recvfrom(sock, 3000)
            if found is not None:
                break
        assert found is not None and found[0] == b"\x06\x00\xff\x07"
