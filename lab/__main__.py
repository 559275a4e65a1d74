"""python -m lab --nodes N ...: run the hardware lab until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import cast

from lab.server import Lab, LabConfig, Protocol
from lab.vendors import GPU_MODELS


def parse_args(argv: list[str] | None = None) -> LabConfig:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--ipmi-base-port", type=int, default=19001)
    p.add_argument("--redfish-port", type=int, default=18101)
    p.add_argument("--control-port", type=int, default=18100)
    p.add_argument("--boot-url", default="http://127.0.0.1:8000")
    p.add_argument("--boot-delay", type=float, default=2.0)
    p.add_argument("--state-dir", type=Path, default=Path(".metalplane/lab"))
    p.add_argument("--protocols", default="ipmi,redfish", help="cycled across nodes")
    p.add_argument(
        "--slurm", action="store_true", help="run cluster roles with real Slurm daemons (root)"
    )
    p.add_argument(
        "--flat-network", metavar="PREFIX", help="every node on one bridge, no fabric (root)"
    )
    p.add_argument("--gpu-model", choices=[g[1] for g in GPU_MODELS], help="every node's GPU model")
    p.add_argument("--qemu-nodes", type=int, default=0, help="more nodes that are QEMU VMs")
    p.add_argument(
        "--ssh-base-port", type=int, default=2200,
        help="QEMU node N's SSH server on 127.0.0.1:(this + N - 1); 0: not forwarded",
    )  # fmt: skip
    args = p.parse_args(argv)
    protocols = tuple(x.strip() for x in args.protocols.split(",") if x.strip())
    if not protocols or any(x not in ("ipmi", "redfish") for x in protocols):
        p.error("--protocols takes ipmi and/or redfish")
    return LabConfig(
        nodes=args.nodes,
        state_dir=args.state_dir,
        ipmi_base_port=args.ipmi_base_port,
        redfish_port=args.redfish_port,
        control_port=args.control_port,
        boot_url=args.boot_url,
        boot_delay=args.boot_delay,
        protocols=cast(tuple[Protocol, ...], protocols),
        slurm=args.slurm,
        flat_network=args.flat_network,
        gpu_model=args.gpu_model,
        qemu_nodes=args.qemu_nodes,
        ssh_base_port=args.ssh_base_port,
    )


async def run(config: LabConfig) -> None:
    lab = Lab(config)
    started = time.monotonic()
    await lab.start()
    logging.getLogger("lab").info(
        "lab up: %d nodes in %.2fs, control http://127.0.0.1:%d/lab/nodes",
        len(lab.nodes),
        time.monotonic() - started,
        config.control_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await lab.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # One line per Redfish request would drown the lab's own log.
    for noisy in ("werkzeug", "sushy_tools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(run(parse_args()))


if __name__ == "__main__":
    main()
