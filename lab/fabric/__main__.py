"""python -m lab.fabric up|down --prefix P --state-dir D: build or remove a fabric."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lab.fabric.fabric import Fabric, teardown
from lab.fabric.topology import LEAF_KINDS, FabricConfig, FabricError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.fabric", description=__doc__)
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--prefix", required=True, help="namespace and link name prefix")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--spines", type=int, default=1)
    p.add_argument("--leaves", type=int, default=2)
    p.add_argument("--hosts-per-leaf", type=int, default=2)
    p.add_argument("--mgmt-subnet", default="172.31.250.0/24")
    p.add_argument(
        "--leaf-kind", choices=LEAF_KINDS, default="netns", help="uml: leaves with VRF (slower)"
    )
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("paramiko").setLevel(logging.WARNING)  # the lab's logins to UML leaves
    try:
        if args.action == "down":
            teardown(args.prefix, args.state_dir)
            return 0
        config = FabricConfig(
            prefix=args.prefix,
            state_dir=args.state_dir.resolve(),
            spines=args.spines,
            leaves=args.leaves,
            hosts_per_leaf=args.hosts_per_leaf,
            mgmt_subnet=args.mgmt_subnet,
            leaf_kind=args.leaf_kind,
        )
        fabric = Fabric(config).up(timeout=args.timeout)
    except FabricError as exc:
        print(f"fabric {args.action} failed: {exc}", file=sys.stderr)
        return 1
    summary = {
        "started_in": round(fabric.started_in or 0.0, 2),
        "switches": {s.name: s.mgmt_address for s in fabric.topology.switches},
        "hosts": {h.name: f"{h.leaf}:{h.port}" for h in fabric.topology.hosts},
        "username": "root",
        "password_file": fabric.credentials.password_file if fabric.credentials else None,
        "key_file": fabric.credentials.key_file if fabric.credentials else None,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
