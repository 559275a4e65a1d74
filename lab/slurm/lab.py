"""Real Slurm daemons for simulated nodes: munged, slurmd (and slurmctld on the controller),
each node in its own network namespace with a private /run and its own hostname (as root)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from images.slurm import SlurmRole
from lab.slurm.daemon import Daemon, in_node, record, spawn, stop_recorded

log = logging.getLogger(__name__)
# Short on purpose: munge's unix socket lives here and sun_path holds 107 bytes.
RUNTIME_ROOT = Path("/run/metalplane-slurm")
SUN_PATH_MAX = 107
IFNAME = "eth0"  # the node's tenant interface in its netns (as in the fabric's hosts)
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
GPU_DEVICE = "/run/gpu/nvidia"  # placeholder device files in a node's private /run
STABLE_RUN = 60.0  # a slurmd that ran this long restarts with the shortest delay again
CONTROLLER_CHECK = 1.0  # seconds between a compute's looks at its controller's start time


class SlurmLabError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeSlurmStatus:
    node_id: str
    running: bool  # the node is supposed to run Slurm (started, not stopped)
    cluster: str | None = None
    role: str | None = None
    pids: dict[str, int] = field(default_factory=dict)  # live daemons
    slurmd_exits: int = 0  # unexpected exits, each followed by a restart
    slurmd_last_exit: int | None = None
    error: str | None = None  # why supervision gave up
    log_tail: str = ""  # last line of slurmd.log


@dataclass
class _Node:
    node_id: str
    netns: str
    role: SlurmRole
    run_dir: Path
    daemons: dict[str, Daemon] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    supervisor: asyncio.Task[None] | None = None
    exits: int = 0
    last_exit: int | None = None
    error: str | None = None


class SlurmLab:
    """One per lab process. Cluster files under `state_dir`, each node's /run under a short
    runtime dir. Daemons are foreground children: the lab knows their PIDs and reaps them."""

    def __init__(self, state_dir: Path, *, backoff: tuple[float, float] = (2.0, 10.0)) -> None:
        self.state_dir = state_dir.resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:8]
        self.runtime = RUNTIME_ROOT / digest
        self.backoff = backoff
        self._nodes: dict[str, _Node] = {}
        self._controllers: dict[str, str] = {}  # cluster -> node id
        # cluster -> how many controllers have come up (a replaced head node is the second)
        self._controller_generation: dict[str, int] = {}
        self._announcing: set[asyncio.Task[None]] = set()
        self._pids = self.state_dir / "pids.json"
        stop_recorded(self._pids)  # what a crashed lab on this state dir left running

    def run_dir(self, node_id: str) -> Path:
        """The host directory that is the node's /run (logs: slurmd.log, slurmctld.log)."""
        return self.runtime / node_id

    def client_conf(self, cluster: str) -> Path:
        return self.state_dir / cluster / "client.conf"

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, node_id: str, netns: str, role: SlurmRole) -> None:
        """Apply a node's Slurm role: address, munged, slurmctld (controller), then a supervised
        slurmd. Raises (after stopping what started) when munged or slurmctld fail."""
        if not NODE_ID.match(node_id):
            raise SlurmLabError(f"invalid node id {node_id!r}")
        if node_id in self._nodes:
            raise SlurmLabError(f"{node_id} already runs Slurm")
        if role.role == "controller" and role.cluster in self._controllers:
            raise SlurmLabError(f"{role.cluster} already has a controller")
        run = self.run_dir(node_id)
        if role.munge_key is None:
            raise SlurmLabError(f"{node_id}: the role has no munge key")
        if len(str(run / "munge" / "munge.socket.2")) > SUN_PATH_MAX:
            raise SlurmLabError(f"{run} is too long for a unix socket path")
        shutil.rmtree(run, ignore_errors=True)  # a fresh /run, as after a reboot
        (run / "munge").mkdir(parents=True)
        node = self._nodes[node_id] = _Node(node_id, netns, role, run)
        try:
            await _check(["ip", "-n", netns, "addr", "replace", role.address, "dev", IFNAME])
            self._announce(netns, role.address)
            await self._munged(node)
            if role.role == "controller":
                await self._slurmctld(node)
            for i in range(role.gpus):  # where gres.conf's File= points
                (run / "gpu").mkdir(exist_ok=True)
                (run / "gpu" / f"{Path(GPU_DEVICE).name}{i}").touch()
            node.supervisor = asyncio.create_task(self._supervise(node))
        except BaseException:
            await self.stop(node_id)
            raise

    async def stop(self, node_id: str) -> None:
        """slurmd, slurmctld, then munged, by PID (SIGTERM, then SIGKILL). Idempotent."""
        node = self._nodes.get(node_id)
        if node is None:
            return
        node.stopping.set()
        if slurmd := node.daemons.get("slurmd"):
            await slurmd.stop()
        if node.supervisor:
            await node.supervisor  # sees `stopping`: no restart
        for name in ("slurmd", "slurmctld", "munged"):
            if daemon := node.daemons.get(name):
                await daemon.stop()
        # The address goes with the OS: the next tenant's node must not answer for it.
        with contextlib.suppress(SlurmLabError):
            await _check(["ip", "-n", node.netns, "addr", "del", node.role.address, "dev", IFNAME])
        del self._nodes[node_id]
        if self._controllers.get(node.role.cluster) == node_id:
            del self._controllers[node.role.cluster]
        self._record()

    async def stop_all(self) -> None:
        """Compute nodes first (together), controllers last; no announcement left running."""
        await asyncio.gather(*self._announcing)
        computes = [n for n, x in self._nodes.items() if x.role.role == "compute"]
        await asyncio.gather(*(self.stop(n) for n in computes))
        for node_id in list(self._nodes):
            await self.stop(node_id)

    def remove_runtime(self) -> None:
        """Delete the nodes' /run dirs (logs included) once nothing runs: they live on tmpfs."""
        if self._nodes:
            raise SlurmLabError(f"Slurm still runs on {sorted(self._nodes)}")
        shutil.rmtree(self.runtime, ignore_errors=True)
        with contextlib.suppress(OSError):
            RUNTIME_ROOT.rmdir()  # only when no other lab uses it

    def status(self, node_id: str) -> NodeSlurmStatus:
        node = self._nodes.get(node_id)
        if node is None:
            return NodeSlurmStatus(node_id, running=False)
        return NodeSlurmStatus(
            node_id,
            running=True,
            cluster=node.role.cluster,
            role=node.role.role,
            pids={n: d.pid for n, d in node.daemons.items() if d.running},
            slurmd_exits=node.exits,
            slurmd_last_exit=node.last_exit,
            error=node.error,
            log_tail=_last_line(node.run_dir / "slurmd.log"),
        )

    # -- client commands -----------------------------------------------------------------------
    async def run(self, cluster: str, *argv: str, timeout: float = 30.0) -> str:
        """A client command (srun, scontrol, ...) in the controller's netns: it works with
        overlapping tenant CIDRs and no host route. Always under a timeout: against a dead
        controller clients retry for long."""
        node_id = self._controllers.get(cluster)
        if node_id is None:
            raise SlurmLabError(f"no controller of {cluster} runs in this lab")
        netns = self._nodes[node_id].netns
        cmd = ["timeout", "-k", "1", str(timeout), "nsenter", f"--net=/run/netns/{netns}", *argv]
        env = {**os.environ, "SLURM_CONF": str(self.client_conf(cluster))}
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout + 5)
        finally:
            if proc.returncode is None:  # timed out or cancelled
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode:
            why = err.decode().strip()
            raise SlurmLabError(f"{' '.join(argv)} exited {proc.returncode}: {why}")
        return out.decode()

    async def nodes(self, cluster: str) -> list[dict[str, Any]]:
        """`sinfo --json` nodes (name, state, state_flags, features, gres, ...)."""
        return json.loads(await self.run(cluster, "sinfo", "--json"))["nodes"]

    # -- daemons -------------------------------------------------------------------------------
    async def _spawn(self, node: _Node, name: str, argv: list[str]) -> Daemon:
        daemon = await spawn(name, argv, node.run_dir / f"{name}.out")
        node.daemons[name] = daemon
        self._record()
        return daemon

    async def _munged(self, node: _Node) -> None:
        """Own munged per node, in the host mount namespace: the node sees its socket at
        /run/munge through the bind mount (slurmd fetches its config before any AuthInfo)."""
        m = node.run_dir / "munge"
        key = m / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(node.role.munge_key or b"")
        sock = m / "munge.socket.2"
        daemon = await self._spawn(
            node,
            "munged",
            [
                *("munged", "-F", f"--socket={sock}", f"--key-file={key}"),
                *(f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}"),
                *(f"--seed-file={m / 'seed'}", f"--origin={node.role.ip}"),
            ],
        )
        await _until(sock.exists, daemon, 5.0, node.run_dir / "munged.out")

    async def _slurmctld(self, node: _Node) -> None:
        role = node.role
        etc = node.run_dir / "etc"  # gres.conf is served configless from slurm.conf's dir
        etc.mkdir()
        (etc / "slurm.conf").write_text(role.slurm_conf or "")
        (etc / "gres.conf").write_text(role.gres_conf or "AutoDetect=off\n")
        # Clients on the host take AuthInfo (the host has no /run/munge of its own).
        client = self.client_conf(role.cluster)
        client.parent.mkdir(parents=True, exist_ok=True)
        sock = node.run_dir / "munge" / "munge.socket.2"
        client.write_text(f"{role.slurm_conf}\nAuthInfo=socket={sock}\n")
        self._controllers[role.cluster] = node.node_id
        argv = ["slurmctld", "-D", "-f", "/run/etc/slurm.conf", "-L", "/run/slurmctld.log"]
        daemon = await self._spawn(
            node, "slurmctld", in_node(node.netns, node.run_dir, role.node_name, *argv)
        )

        async def up() -> bool:
            with contextlib.suppress(SlurmLabError):
                return " is UP" in await self.run(role.cluster, "scontrol", "ping", timeout=2)
            return False

        await _until(up, daemon, 15.0, node.run_dir / "slurmctld.log")
        self._controller_generation[role.cluster] = (
            self._controller_generation.get(role.cluster, 0) + 1
        )

    async def _supervise(self, node: _Node) -> None:
        """Run slurmd, restarting it with backoff while the node runs: it exits (after ~19 s)
        when the controller is unreachable and never retries by itself."""
        role, loop = node.role, asyncio.get_running_loop()
        argv = [
            *("slurmd", "-D", "-Z", "--conf-server", f"{role.controller}:{role.slurmctld_port}"),
            *("--conf", role.slurmd_conf, "-L", "/run/slurmd.log"),
        ]
        delay = self.backoff[0]
        try:
            while not node.stopping.is_set():
                daemon = await self._spawn(
                    node, "slurmd", in_node(node.netns, node.run_dir, role.node_name, *argv)
                )
                began = loop.time()
                code, to_register = await self._exit_or_new_controller(node, daemon)
                self._record()
                if node.stopping.is_set():
                    return
                if to_register:
                    continue  # at once, and not counted as an exit
                node.exits, node.last_exit = node.exits + 1, code
                if loop.time() - began > STABLE_RUN:
                    delay = self.backoff[0]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(node.stopping.wait(), delay)
                delay = min(delay * 2, self.backoff[1])
        except Exception as e:  # status() reports it; stop() still cleans up
            node.error = f"slurmd supervision failed: {e}"

    def _announce(self, netns: str, address: str) -> None:
        """Unsolicited ARP for an address the node just took, as a real node's network setup
        sends: a head node's replacement takes its address, and the other nodes' neighbour
        entries would point at the old MAC for tens of seconds."""
        ip = address.split("/")[0]
        argv = ["ip", "netns", "exec", netns, "arping", "-q", "-U", "-c", "1", "-I", IFNAME, ip]
        task = asyncio.create_task(_announced(argv))  # takes 1 s; nothing waits on it
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def _exit_or_new_controller(self, node: _Node, daemon: Daemon) -> tuple[int | None, bool]:
        """slurmd's exit code, or its code and True once a compute node's controller has been
        replaced: stopped so that it starts again and registers with the new one. slurmd
        registers only when it starts, and a controller that replaced the head node (same
        address, fresh state) knows none of the dynamic nodes that registered with the old
        one; the golden image's cluster agent restarts slurmd when its controller changes.
        A slurmd started before the cluster's first controller came up registers with that
        one: only a later generation restarts it."""
        cluster = node.role.cluster
        registers_with = max(self._controller_generation.get(cluster, 0), 1)
        exited = asyncio.ensure_future(daemon.proc.wait())
        while True:
            done, _ = await asyncio.wait({exited}, timeout=CONTROLLER_CHECK)
            if done:
                return exited.result(), False
            replaced = self._controller_generation.get(cluster, 0) > registers_with
            if node.role.role == "compute" and replaced:
                if not node.stopping.is_set():
                    await daemon.stop()
                return await exited, True

    def _record(self) -> None:
        record(self._pids, {n: list(x.daemons.values()) for n, x in self._nodes.items()})


async def _announced(argv: list[str]) -> None:
    try:
        await _check(argv)
    except (SlurmLabError, OSError) as error:  # only slows the next contact to the address
        log.warning("no unsolicited ARP: %s", error)


async def _until(
    ready: Callable[[], bool | Awaitable[bool]], daemon: Daemon, timeout: float, log: Path
) -> None:
    """Poll `ready` (sync or async); fail at once if the daemon exits meanwhile."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = ready()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if not daemon.running or asyncio.get_running_loop().time() > deadline:
            state = "exited" if not daemon.running else "not ready"
            raise SlurmLabError(f"{daemon.name} {state}: {_last_line(log)}")
        await asyncio.sleep(0.02)


async def _check(argv: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode:
        raise SlurmLabError(f"{' '.join(argv)} exited {proc.returncode}: {err.decode().strip()}")


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
