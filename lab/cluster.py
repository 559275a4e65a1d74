"""What a lab node's OS does with its part in a cluster, as the golden image's cloud-init and
cluster agent would on a real node: run its Slurm role (lab.slurm: real munged, slurmd and, on
the head node, slurmctld, in the node's network namespace), and on the head node report the
cluster to the platform and act on the answer: drain and delete the nodes that are no longer
members, run the test job asked for."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any

import aiohttp

from core.cluster_report import UP_STATES, ClusterReport, ReportedNode, Verification
from lab.boot import ClusterPart
from lab.node import SimNode
from lab.slurm import SlurmLab, SlurmLabError

log = logging.getLogger(__name__)

LEAVING = "metalplane: leaving the cluster"  # the drain reason of nodes being removed
TEST_JOB_TIMEOUT = 60.0


def reported_node(raw: dict[str, Any]) -> ReportedNode:
    """A node of `sinfo --json` as the report carries it."""
    features = raw.get("active_features") or raw.get("features") or []
    if isinstance(features, str):
        features = [f for f in features.split(",") if f]
    return ReportedNode(
        name=str(raw.get("name", ""))[:63],
        state=str(raw.get("state", "unknown")).lower()[:32],
        flags=[str(f).upper() for f in raw.get("state_flags") or []][:16],
        features=[str(f) for f in features][:32],
        gres=str(raw.get("gres") or "")[:256],
        reason=str(raw.get("reason") or "")[:256],
    )


class ClusterRunner:
    """One per lab. Per node: its Slurm daemons, and on the head node the reporting agent."""

    def __init__(self, slurm: SlurmLab) -> None:
        self.slurm = slurm
        self._locks: dict[str, asyncio.Lock] = {}
        self._agents: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, connect=5))

    def _lock(self, node_id: str) -> asyncio.Lock:
        return self._locks.setdefault(node_id, asyncio.Lock())

    async def apply(self, node: SimNode, part: ClusterPart) -> None:
        """Start the node's role (after whatever its previous boot ran). A failure is the
        node's `cluster_error`: the head node's report, or its absence, tells the platform."""
        async with self._lock(node.node_id):
            await self._stop(node.node_id)
            node.set_cluster_error(None)
            if node.netns is None:
                node.set_cluster_error("no network namespace: the lab has not cabled this node")
                return
            role = part.section.slurm.model_copy(
                update={"munge_key": base64.b64decode(part.secrets.munge_key)}
            )
            try:
                await self.slurm.start(node.node_id, node.netns, role)
            except SlurmLabError as exc:
                log.warning("%s: Slurm role failed: %s", node.node_id, exc)
                node.set_cluster_error(str(exc))
                return
            if part.section.report_url and part.secrets.report_token:
                self._agents[node.node_id] = asyncio.create_task(self._agent(part))
            log.info("%s: %s of %s", node.node_id, role.role, role.cluster)

    def stop_soon(self, node_id: str) -> None:
        """Power off (called on the loop): the daemons go, in order, in the background."""
        task = asyncio.get_running_loop().create_task(self.stop(node_id))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop(self, node_id: str) -> None:
        async with self._lock(node_id):
            await self._stop(node_id)

    async def _stop(self, node_id: str) -> None:
        agent = self._agents.pop(node_id, None)
        if agent is not None:
            agent.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent
        await self.slurm.stop(node_id)

    async def close(self) -> None:
        await asyncio.gather(*self._stopping, return_exceptions=True)
        for node_id in list(self._agents):
            await self.stop(node_id)
        await self.slurm.stop_all()
        self.slurm.remove_runtime()
        await self._client.close()

    def status(self, node_id: str) -> dict[str, Any]:
        status = self.slurm.status(node_id)
        return {
            "running": status.running, "cluster": status.cluster, "role": status.role,
            "daemons": status.pids, "slurmd_exits": status.slurmd_exits,
            "error": status.error, "log_tail": status.log_tail,
            "agent": node_id in self._agents,
        }  # fmt: skip

    # -- the head node's agent -------------------------------------------------------------------
    async def _agent(self, part: ClusterPart) -> None:
        section, cluster = part.section, part.section.slurm.cluster
        members: list[str] | None = None  # unknown until the platform answers
        asked, done = 0, 0  # test job generations: asked for, passed
        verification: Verification | None = None
        while True:
            try:
                nodes = [reported_node(n) for n in await self.slurm.nodes(cluster)]
                if members is not None:
                    await self._reconcile(cluster, nodes, members)
                    if asked > done and _all_up(nodes, members):
                        verification = await self._test_job(cluster, members, asked)
                        if verification.ok:
                            done = asked
                report = ClusterReport(nodes=nodes, verification=verification)
                desired = await self._send(part, report)
                members = [str(m) for m in desired.get("members", [])]
                asked = int(desired.get("verify_generation", 0))
            except (SlurmLabError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("%s: cluster agent: %s", cluster, exc)
            await asyncio.sleep(section.report_interval_seconds)

    async def _send(self, part: ClusterPart, report: ClusterReport) -> dict[str, Any]:
        assert part.section.report_url is not None
        async with self._client.post(
            part.section.report_url,
            json=report.model_dump(mode="json"),
            headers={"Authorization": f"Bearer {part.secrets.report_token}"},
        ) as response:
            if response.status != 200:
                raise ValueError(f"report refused: {response.status} {await response.text()}")
            return dict(await response.json())

    async def _reconcile(self, cluster: str, nodes: list[ReportedNode], members: list[str]) -> None:
        """Drain the nodes that are no longer members; delete them from Slurm once no job runs
        there (a running job finishes first). A member drained by us (a removal undone) comes
        back."""
        for node in nodes:
            drained = "DRAIN" in node.flags
            if node.name not in members:
                if not drained:
                    await self.slurm.run(
                        cluster, "scontrol", "update", f"nodename={node.name}", "state=drain",
                        f"reason={LEAVING}",
                    )  # fmt: skip
                elif node.state in ("idle", "down"):  # drained: no job left
                    await self.slurm.run(cluster, "scontrol", "delete", f"nodename={node.name}")
            elif drained and node.reason == LEAVING:
                await self.slurm.run(
                    cluster, "scontrol", "update", f"nodename={node.name}", "state=resume"
                )

    async def _test_job(self, cluster: str, members: list[str], generation: int) -> Verification:
        """`srun` on every member at once: each must run it and answer with its hostname."""
        try:
            out = await self.slurm.run(
                cluster, "srun", f"-N{len(members)}", f"--nodelist={','.join(members)}",
                "hostname", timeout=TEST_JOB_TIMEOUT,
            )  # fmt: skip
        except SlurmLabError as exc:
            return Verification(generation=generation, ok=False, error=str(exc)[:1024])
        hosts = sorted(out.split())
        ok = hosts == sorted(members)
        error = None if ok else f"test job ran on {hosts}, not on {sorted(members)}"
        return Verification(generation=generation, ok=ok, hosts=hosts, error=error)


def _all_up(nodes: list[ReportedNode], members: list[str]) -> bool:
    up = {n.name for n in nodes if n.state in UP_STATES and "DRAIN" not in n.flags}
    return set(members) <= up
