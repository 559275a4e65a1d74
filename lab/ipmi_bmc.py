"""IPMI BMC simulators (pyghmi's server side), many UDP ports in one process.

pyghmi runs one process-wide I/O thread that select()s on every socket it created, client and
server alike, and queues received packets on the session they belong to; whoever calls
`Session.wait_for_rsp` then runs the handlers. So N BMCs need N bound sockets (one `Bmc`
object each) and one thread that keeps calling `wait_for_rsp`: `IpmiLab` below.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from typing import Any

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import constants, serversession
from pyghmi.ipmi.private import session as ipmi_session

from drivers.bmc import pyghmi_fixes
from lab.node import SimNode

log = logging.getLogger(__name__)
pyghmi_fixes.install()  # the simulators share pyghmi's I/O thread and its sockets

IPMI_NODE_BUSY = 0xC0
RMCP_NO_CIPHER_SUITE_MATCH = 0x11
RMCP_UNAUTHORIZED_NAME = 0x0D
# A client retransmits an unanswered request; while the original is still being answered
# (delay fault) the copy is dropped so a side effect never runs twice.
PENDING_WINDOW_SECONDS = 30.0


class LabServerSession(serversession.ServerSession):
    """RMCP+ server session with cipher-suite refusal, auth errors, faults and dedup."""

    bmc: LabBmc

    def create_open_session_response(self, request: bytearray) -> bytearray:
        # pyghmi's server only implements suite 3 (HMAC-SHA1, HMAC-SHA1-96, AES) but accepts
        # any offer; the pyghmi client offers suite 17 first and crashes on the reply.
        # Refusing makes the client fall back to suite 3.
        auth_algo, integrity_algo = request[12] & 0x3F, request[20] & 0x3F
        if auth_algo != 1 or integrity_algo != 1:
            self.clientsessionid = request[4:8]
            return bytearray([request[0], RMCP_NO_CIPHER_SUITE_MATCH, 0, 0]) + request[4:8]
        return super().create_open_session_response(request)

    def _got_rmcp_openrequest(self, data: Any) -> None:
        # A client logging in again from the same UDP port (after loss or a dead session)
        # lands here. pyghmi would answer with the old session's keys still active; a real
        # BMC starts a new session, so do that.
        LabServerSession(
            self.authdata,
            self.kg,
            self.sockaddr,
            self.socket,
            bytearray(data),
            self.uuid,
            bmc=self.bmc,
        )

    def _got_rakp1(self, data: Any) -> None:
        name = bytes(data[28:]).decode("utf-8", "replace") if data[27] else ""
        if self.authdata.get(name) is None:
            # Real BMCs answer RAKP2 "unauthorized name"; pyghmi's stock server stays silent
            # and the client would see a timeout instead of an auth error.
            reply = bytearray([data[0], RMCP_UNAUTHORIZED_NAME, 0, 0]) + self.clientsessionid
            self.send_payload(reply, constants.payload_types["rakp2"], retry=False)
            return
        super()._got_rakp1(data)

    def _handle_ipmi_packet(self, data: Any, sockaddr: Any = None, qent: Any = None) -> Any:
        if self.bmc.node.roll_drop():
            return None  # the packet got lost on the wire
        return super()._handle_ipmi_packet(data, sockaddr=sockaddr, qent=qent)

    def handle_client_request(self, request: dict[str, Any]) -> None:
        # pyghmi clients reuse rqSeq for consecutive commands, so only a copy arriving while
        # the original is still unanswered (delay fault) is a retransmission.
        key = (self.seqlun, self.clientnetfn, self.clientcommand, bytes(request["data"]))
        pending = self.__dict__.get("_lab_pending")
        if pending is not None and pending[0] == key:
            if time.monotonic() - pending[1] < PENDING_WINDOW_SECONDS:
                return
        self._lab_pending = (key, time.monotonic())
        super().handle_client_request(request)

    def send_ipmi_response(self, data: Any = (), code: int = 0) -> None:
        self._lab_pending = None
        super().send_ipmi_response(data=list(data), code=code)

    def _send_ipmi_net_payload(self, *args: Any, **kwargs: Any) -> None:
        self._lab_pending = None
        super()._send_ipmi_net_payload(*args, **kwargs)


class LabBmc(pyghmi_bmc.Bmc):
    """One node's BMC on its own UDP port."""

    def __init__(self, node: SimNode, users: dict[str, str], port: int, address: str) -> None:
        # An IPv6 socket bound to the v4-mapped loopback: pyghmi's wake-up packets (sent to
        # ::1 or ::ffff:127.0.0.1) need every socket in its select set to be IPv6.
        super().__init__(users, port=port, bmcuuid=uuid.UUID(node.uuid), address=address)
        self.node = node
        self.mfgid = _IANA.get(node.vendor, 0)
        # Serial-over-LAN: the node's console output goes to the active SOL session; what a
        # client types is dropped (the simulated node has no shell to read it).
        self.iohandler = self._typed
        node.attach_console(self._print)

    def _typed(self, data: Any) -> None:
        pass

    def _print(self, data: bytes) -> None:
        sol = self.sol
        if sol is not None:
            sol.send_data(data)

    def is_active(self) -> bool:
        return True  # SOL is the BMC's: there whether the host is powered or not

    def activate_payload(self, request: Any, session: Any) -> None:
        # A real BMC ends a SOL session whose IPMI session timed out; this one keeps no
        # session timers, so a new activation takes SOL over (a restarted relay gets it back).
        self.activated, self.sol = False, None
        super().activate_payload(request, session)

    def sessionless_data(self, data: Any, sockaddr: Any) -> None:
        if self.node.roll_drop():
            return
        raw = bytearray(data)
        if (
            len(raw) >= 22
            and raw[0] == 6
            and raw[2:4] == b"\xff\x07"
            and raw[4] == 6
            and raw[5] == 16
        ):
            # RMCP+ Open Session Request: our session class instead of pyghmi's
            LabServerSession(
                self.authdata, self.kg, sockaddr, self.serversocket, raw[16:], self.uuid, bmc=self
            )
            return
        super().sessionless_data(data, sockaddr)

    def handle_raw_request(self, request: dict[str, Any], session: Any) -> None:
        if self.node.take_failure():
            session.send_ipmi_response(code=IPMI_NODE_BUSY)
            return
        delay = self.node.delay
        if delay > 0:
            timer = threading.Timer(delay, super().handle_raw_request, (request, session))
            timer.daemon = True
            timer.start()
            return
        super().handle_raw_request(request, session)

    # -- chassis ----------------------------------------------------------------------------

    def get_power_state(self) -> str:
        return self.node.power

    def power_on(self) -> int:
        self.node.power_on()
        return 0

    def power_off(self) -> int:
        self.node.power_off()
        return 0

    def power_reset(self) -> int:
        self.node.reset()
        return 0

    def power_cycle(self) -> int:
        # Off then on: counts as one reset-like side effect.
        self.node.reset()
        return 0

    def power_shutdown(self) -> int:
        self.node.soft_off()
        return 0

    # -- boot options (IPMI v2 28.12/28.13, parameter 5 = boot flags) -----------------------

    def get_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        if request["data"][0] & 0x7F != 5:
            session.send_ipmi_response(code=0x80)  # parameter not supported
            return
        with self.node._lock:
            device, persistent = self.node.boot_device, self.node.boot_persistent
        if device == "none":
            flags, devnum = 0, 0  # bit 7 clear: no override valid
        else:
            flags = 0x80 | (0x40 if persistent else 0)
            devnum = {"network": 1, "disk": 2}[device] << 2
        session.send_ipmi_response(data=[1, 5, flags, devnum, 0, 0, 0])

    def set_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        param = request["data"][0] & 0x7F
        if param != 5:
            session.send_ipmi_response()  # boot-info acknowledge and friends: accepted
            return
        flags, devnum = request["data"][1], (request["data"][2] >> 2) & 0x0F
        device = {0: "none", 1: "network", 2: "disk"}.get(devnum)
        if device is None:
            session.send_ipmi_response(code=0xCC)  # invalid data field
            return
        if not flags & 0x80:
            device = "none"
        self.node.set_boot(device, persistent=bool(flags & 0x40))  # type: ignore[arg-type]
        session.send_ipmi_response()

    def get_system_guid(self) -> Any:
        return self.uuid

    def cold_reset(self) -> int:
        return 0


_IANA = {"Dell Inc.": 674, "HPE": 47196, "Supermicro": 10876, "Lenovo": 19046}


def _ensure_wake_socket() -> None:
    """Give pyghmi a loopback wake-up socket as iosockets[0] before any BMC socket exists.

    pyghmi wakes its I/O thread by sending a byte to (myself, port of iosockets[0]). With a
    BMC socket first in line, a closed BMC would break every later wake-up, and a socket bound
    to ::ffff:127.0.0.1 never receives what is sent to ::1 (pyghmi's guess for myself): the
    wake-up is lost and a waiter sleeps until the select deadline (minutes).
    """
    if ipmi_session.iosockets:
        return
    ipmi_session.myself = "::ffff:127.0.0.1"
    info = socket.getaddrinfo("::ffff:127.0.0.1", 0, 0, socket.SOCK_DGRAM)[0]
    ipmi_session.Session._assignsocket(info)


class IpmiLab:
    """All IPMI simulators of a lab and the thread that serves them."""

    def __init__(self, users: dict[str, str], address: str = "127.0.0.1") -> None:
        self.users = users
        self.address = address
        self.bmcs: dict[str, LabBmc] = {}
        self._running = False
        self._thread: threading.Thread | None = None

    def add(self, node: SimNode, port: int) -> LabBmc:
        _ensure_wake_socket()
        bind = f"::ffff:{self.address}" if ":" not in self.address else self.address
        bmc = LabBmc(node, self.users, port, bind)
        self.bmcs[node.node_id] = bmc
        return bmc

    def start(self) -> None:
        if not self.bmcs:
            return  # a Redfish-only lab: pyghmi has no sockets to serve
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="lab-ipmi", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._running:
            try:
                ipmi_session.Session.wait_for_rsp(timeout=0.5)
            except Exception:  # one bad packet must not stop 200 BMCs
                log.exception("IPMI simulator loop error")

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        sockets = [bmc.serversocket for bmc in self.bmcs.values()]
        # Take the sockets out of pyghmi's select set before closing them, so its I/O thread
        # never selects on a closed descriptor.
        for sock in sockets:
            ipmi_session.Session.bmc_handlers.pop(sock, None)
            if sock in ipmi_session.iosockets:
                ipmi_session.iosockets.remove(sock)
        for handlers in list(ipmi_session.Session.bmc_handlers.values()):
            for port, sess in list(handlers.items()):
                if isinstance(sess, LabServerSession) and sess.socket in sockets:
                    del handlers[port]
        _wake_io_thread()
        time.sleep(0.05)
        for sock in sockets:
            sock.close()
        self.bmcs.clear()


def _wake_io_thread() -> None:
    if ipmi_session.iosockets and ipmi_session.myself:
        wake = ipmi_session.iosockets[0]
        try:
            wake.sendto(b"\x01", (ipmi_session.myself, wake.getsockname()[1]))
        except OSError:
            pass


__all__ = ["IpmiLab", "LabBmc", "LabServerSession"]
