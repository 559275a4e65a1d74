"""python -m lab.ib: the InfiniBand lab.

subnet    start ibsim + OpenSM (--nodes, --switches), print the ports, run until interrupted
pkeys     print a GPU node's (or a LID's) PKey table from a running subnet
teardown  stop what a crashed `subnet` left in its state dir
ufm       serve the UFM REST contract simulator until interrupted
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import threading
from pathlib import Path

from lab.ib.smp import FULL_MEMBER, SimClient, pkey_entries
from lab.ib.subnet import IbSubnet, teardown
from lab.ib.ufm_sim import PASSWORD, UFM_SIM_PORT, USERNAME, UfmSimulator

DEFAULT_STATE_DIR = Path(".metalplane/ib")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lab.ib", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = p.add_subparsers(dest="command", required=True)
    subnet = commands.add_parser("subnet", help="run an ibsim subnet managed by OpenSM")
    subnet.add_argument("--nodes", type=int, default=4)
    subnet.add_argument("--switches", type=int, choices=(1, 2), default=1)
    pkeys = commands.add_parser("pkeys", help="a port's PKey table (smpquery pkeys)")
    pkeys.add_argument("port", help="a GPU node name (gpu-001) or a LID")
    down = commands.add_parser("teardown", help="stop leftovers of a crashed subnet")
    for command in (subnet, pkeys, down):
        command.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    ufm = commands.add_parser("ufm", help="serve the UFM REST contract simulator")
    ufm.add_argument("--host", default="127.0.0.1")
    ufm.add_argument("--port", type=int, default=UFM_SIM_PORT)
    ufm.add_argument("--username", default=USERNAME)
    ufm.add_argument("--password", default=PASSWORD)
    return p.parse_args(argv)


def run_subnet(args: argparse.Namespace) -> None:
    subnet = IbSubnet(args.state_dir, nodes=args.nodes, switches=args.switches)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    subnet.start()
    try:
        print(f"subnet up in {subnet.startup_seconds:.2f}s; partitions: {subnet.partitions_file}")
        print(f"OpenSM pid file: {subnet.opensm_pid_file}")
        for port in subnet.ports.values():
            where = f"{port.switch}[{port.switch_port}]"
            print(f"{port.node}  port GUID {port.port_guid}  LID {port.lid}  {where}")
        stop.wait()
    finally:
        subnet.stop()


def show_pkeys(args: argparse.Namespace) -> None:
    state_dir = args.state_dir.resolve()
    subnet = json.loads((state_dir / "subnet.json").read_text())
    lids = {p["node"]: p["lid"] for p in subnet["ports"]}
    lid = lids[args.port] if args.port in lids else int(args.port)
    for entry in sorted(pkey_entries(SimClient(subnet["sockname"], state_dir).pkey_table(lid))):
        membership = "full" if entry & FULL_MEMBER else "limited"
        print(f"{entry & 0x7FFF:#06x}  {membership}  (table entry {entry:#06x})")


async def run_ufm(args: argparse.Namespace) -> None:
    simulator = UfmSimulator(args.username, args.password)
    await simulator.start(args.host, args.port)
    print(f"UFM REST contract simulator on http://{args.host}:{args.port}/ufmRest")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.command == "subnet":
        run_subnet(args)
    elif args.command == "pkeys":
        show_pkeys(args)
    elif args.command == "teardown":
        teardown(args.state_dir)
    else:
        asyncio.run(run_ufm(args))


if __name__ == "__main__":
    main()
