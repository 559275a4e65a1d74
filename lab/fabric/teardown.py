"""Remove everything of a fabric prefix, whether or not its state survived (after a crash)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lab.fabric.system import (
    namespaces,
    netns_pids,
    owned_pid,
    read_pid,
    root_links,
    run,
    stop_pids,
)
from lab.fabric.topology import RUNTIME_ROOT, FabricError

STATE_FILE = "fabric.json"  # in the state dir: plan, PIDs, credentials' paths


def teardown(prefix: str, state_dir: Path | None = None) -> None:
    """Stop and delete everything of a fabric prefix, whether or not its state survived: the
    PIDs it recorded (if they still are its processes), every process in its namespaces, the
    namespaces, its root-namespace links and its FRR runtime dir."""
    runtime = RUNTIME_ROOT / prefix
    markers = [str(runtime)] + ([str(state_dir)] if state_dir is not None else [])
    recorded: set[int] = set()
    state = Path(state_dir) / STATE_FILE if state_dir is not None else None
    if state is not None and state.exists():
        for pids in json.loads(state.read_text()).get("pids", {}).values():
            recorded.update(pids)
    pidfiles = [*runtime.glob("*/*.pid")]
    if state_dir is not None:
        pidfiles += Path(state_dir).glob("sshd-*.pid")
    for pidfile in pidfiles:
        pid = read_pid(pidfile)
        if pid is not None:
            recorded.add(pid)
    pids = {p for p in recorded if owned_pid(p, markers)}
    for netns in namespaces(prefix):
        pids.update(netns_pids(netns))
    stop_pids(pids)
    for netns in namespaces(prefix):
        run(["ip", "netns", "delete", netns])
    for link in root_links(prefix):
        try:
            run(["ip", "link", "delete", link])
        except FabricError:
            if link in root_links(prefix):  # not just gone with its namespace peer
                raise
    shutil.rmtree(runtime, ignore_errors=True)
