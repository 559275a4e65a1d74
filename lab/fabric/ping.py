"""ICMP echo from inside a namespace (this machine has no ping binary).

`ip netns exec NS python -m lab.fabric.ping DST [--count N] [--timeout S] [--interval S]`
prints `{"sent": N, "received": M}` and exits 0 when any reply came back, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

ECHO_REQUEST, ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def ping(dst: str, count: int, timeout: float, interval: float) -> int:
    """The number of echo replies received."""
    ident = os.getpid() & 0xFFFF
    received = 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        for seq in range(count):
            if seq:
                time.sleep(interval)
            sock.sendto(echo_request(ident, seq, b"metalplane-fabric"), (dst, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    packet, (source, _) = sock.recvfrom(2048)
                except TimeoutError:
                    break
                offset = (packet[0] & 0x0F) * 4  # past the IP header
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", packet[offset : offset + 8])
                if kind == ECHO_REPLY and rid == ident and rseq == seq and source == dst:
                    received += 1
                    break
    return received


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m lab.fabric.ping")
    p.add_argument("dst")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--interval", type=float, default=0.2)
    args = p.parse_args()
    received = ping(args.dst, args.count, args.timeout, args.interval)
    print(json.dumps({"sent": args.count, "received": received}))
    sys.exit(0 if received else 1)


if __name__ == "__main__":
    main()
