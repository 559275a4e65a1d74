"""What a lab node's OS does with its part in a cluster, as the golden image's cloud-init and
cluster agent would on a real node: run its Slurm role (lab.slurm: real munged, slurmd and, on
the head node, slurmctld, in the node's network namespace), and on the head node report the
cluster to the platform and act on the answer: drain and delete the nodes that are no longer
members, run the test job asked for. The head node's report token expires: each accepted report's
answer carries the one to use next."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from core.cluster_report import UP_STATES, ClusterReport, ReportedNode, Verification
from drivers.kubernetes import GPU_RESOURCES, KubeCluster, KubeError, KubeNode
from lab.boot import ClusterPart
from lab.kube import KubeLab, KubeLabError
from lab.node import SimNode
from lab.slurm import SlurmLab, SlurmLabError

log = logging.getLogger(__name__)

LEAVING = "metalplane: leaving the cluster"  # the drain reason of nodes being removed
TEST_JOB_TIMEOUT = 60.0
JOIN_RETRY = 1.0  # seconds between `kubeadm join` attempts while the control plane is away


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


@dataclass(frozen=True)
class _Running:
    kind: str
    cluster: str
    node_name: str
    head: bool


class ClusterRunner:
    """One per lab. Per node: its Slurm daemons or its Kubernetes kubelet (lab/kube.py), and on
    the head node the reporting agent."""

    def __init__(self, slurm: SlurmLab, *, run_slurm: bool = True) -> None:
        self.slurm = slurm
        self.run_slurm = run_slurm  # real Slurm daemons need root and slurm-wlm
        self.kube = KubeLab()
        self._locks: dict[str, asyncio.Lock] = {}
        self._agents: dict[str, asyncio.Task[None]] = {}  # head node agents, kubelets joining
        self._running: dict[str, _Running] = {}
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
            if part.section.kubernetes is not None:
                await self._apply_kube(node, part)
                return
            if not self.run_slurm:
                node.set_cluster_error("this lab runs no Slurm daemons (lab --slurm, as root)")
                return
            if node.netns is None:
                node.set_cluster_error("no network namespace: the lab has not cabled this node")
                return
            if part.section.slurm is None or part.secrets.munge_key is None:
                node.set_cluster_error("a Slurm role needs its section and munge key")
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
            self._running[node.node_id] = _Running(
                "slurm", role.cluster, role.node_name, role.role == "controller"
            )
            if part.section.report_url and part.secrets.report_token:
                reporter = _Reporter(self._client, part)
                self._agents[node.node_id] = asyncio.create_task(self._agent(part, reporter))
            log.info("%s: %s of %s", node.node_id, role.role, role.cluster)

    async def _apply_kube(self, node: SimNode, part: ClusterPart) -> None:
        """`kubeadm init` on the head node, then its agent; `kubeadm join` on the others,
        retried until the control plane answers (as kubeadm's discovery retries)."""
        role, secrets = part.section.kubernetes, part.secrets
        assert role is not None
        if not secrets.kubeadm_config or not secrets.ca_cert:
            node.set_cluster_error("the secrets carry no kubeadm configuration or CA")
            return
        resource = GPU_RESOURCES.get(role.gpu_vendor or "")
        self._running[node.node_id] = _Running(
            "kubernetes", role.cluster, role.node_name, role.role == "controller"
        )
        if role.role == "compute":
            self._agents[node.node_id] = asyncio.create_task(
                self._join(node, role.cluster, role.node_name, secrets.kubeadm_config, role.gpus)
            )
            return
        if not secrets.ca_key:
            # The platform hands the CA key to a controller node once; a network boot is a
            # fresh OS with no /etc/kubernetes/pki, so this boot cannot init the control plane.
            node.set_cluster_error(
                "kubeadm init: no CA key: the platform hands the cluster CA's key to its"
                " controller node once (its first boot as controller), and this boot has no"
                " /etc/kubernetes/pki from then (docs/boot-threat-model.md)"
            )
            return
        try:
            url = await self.kube.init(
                role.cluster, node_name=role.node_name, address=role.address,
                config=secrets.kubeadm_config, ca_cert=secrets.ca_cert.encode(),
                ca_key=secrets.ca_key.encode(), gpus=role.gpus,
                gpu_vendor=role.gpu_vendor, gpu_resource=resource,
            )  # fmt: skip
        except (KubeLabError, ValueError) as exc:
            log.warning("%s: kubeadm init failed: %s", node.node_id, exc)
            node.set_cluster_error(f"kubeadm init: {exc}")
            return
        if part.section.report_url and secrets.report_token:
            reporter = _Reporter(self._client, part)
            self._agents[node.node_id] = asyncio.create_task(self._kube_agent(part, reporter, url))

    async def _join(self, node: SimNode, cluster: str, name: str, config: str, gpus: int) -> None:
        while True:
            try:
                await self.kube.join(cluster, node_name=name, config=config, gpus=gpus)
                node.set_cluster_error(None)
                return
            except KubeLabError as exc:
                node.set_cluster_error(f"kubeadm join: {exc}")
            await asyncio.sleep(JOIN_RETRY)

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
        running = self._running.pop(node_id, None)
        if running is not None and running.kind == "kubernetes":
            if running.head:
                await self.kube.shutdown(running.cluster)
            else:
                await self.kube.leave(running.cluster, running.node_name)
        await self.slurm.stop(node_id)

    async def close(self) -> None:
        await asyncio.gather(*self._stopping, return_exceptions=True)
        for node_id in list(self._agents):
            await self.stop(node_id)
        await self.kube.close()
        await self.slurm.stop_all()
        self.slurm.remove_runtime()
        await self._client.close()

    def status(self, node_id: str) -> dict[str, Any]:
        status, running = self.slurm.status(node_id), self._running.get(node_id)
        return {
            "kind": running.kind if running else None,
            "running": running is not None, "cluster": running.cluster if running else None,
            "role": status.role,
            "daemons": status.pids, "slurmd_exits": status.slurmd_exits,
            "error": status.error, "log_tail": status.log_tail,
            "agent": node_id in self._agents,
            "kube_api": self.kube.url(running.cluster)
            if running and running.kind == "kubernetes" and running.head else None,
        }  # fmt: skip

    async def _kube_agent(self, part: ClusterPart, reporter: _Reporter, url: str) -> None:
        await _KubeAgent(part, reporter, url).run()

    # -- the head node's agent -------------------------------------------------------------------
    async def _agent(self, part: ClusterPart, reporter: _Reporter) -> None:
        assert part.section.slurm is not None
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
                desired = await reporter.send(report)
                members = [str(m) for m in desired.get("members", [])]
                asked = int(desired.get("verify_generation", 0))
            except (SlurmLabError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("%s: cluster agent: %s", cluster, exc)
            await asyncio.sleep(section.report_interval_seconds)

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


class _Reporter:
    """The head node's reports, with the token it has now: each accepted report's answer
    carries a fresh one (the one it used expires)."""

    def __init__(self, client: aiohttp.ClientSession, part: ClusterPart) -> None:
        assert part.section.report_url is not None and part.secrets.report_token is not None
        self.client, self.url = client, part.section.report_url
        self.token = part.secrets.report_token

    async def send(self, report: ClusterReport) -> dict[str, Any]:
        async with self.client.post(
            self.url,
            json=report.model_dump(mode="json"),
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            if response.status != 200:
                raise ValueError(f"report refused: {response.status} {await response.text()}")
            desired = dict(await response.json())
        self.token = str(desired.pop("report_token", None) or self.token)
        return desired


class _KubeAgent:
    """The head node's agent of a Kubernetes cluster, through the official client: applies the
    GPU runtime, reports the nodes, cordons, drains and deletes the ones no longer members, and
    verifies every member Ready with its GPUs advertised."""

    def __init__(self, part: ClusterPart, reporter: _Reporter, url: str) -> None:
        assert part.section.kubernetes is not None
        self.reporter, self.part, self.role = reporter, part, part.section.kubernetes
        self.api = KubeCluster(url)
        self.resource = GPU_RESOURCES.get(self.role.gpu_vendor or "", "")
        self.cordoned: set[str] = set()  # by us, to remove them

    async def run(self) -> None:
        members: list[str] | None = None
        asked, done = 0, 0
        verification: Verification | None = None
        runtime = self.role.gpu_vendor is None
        try:
            while True:
                try:
                    if not runtime:
                        await self.api.ensure_gpu_runtime(str(self.role.gpu_vendor))
                        runtime = True
                    nodes = await self.api.nodes(self.resource)
                    if members is not None:
                        await self._reconcile(nodes, members)
                        ready = {n.name for n in nodes if n.ready and not n.unschedulable}
                        if asked > done and set(members) <= ready:
                            verification = await self._verify(nodes, members, asked)
                            if verification.ok:
                                done = asked
                    report = ClusterReport(
                        nodes=[self._reported(n) for n in nodes], verification=verification
                    )
                    desired = await self.reporter.send(report)
                    members = [str(m) for m in desired.get("members", [])]
                    asked = int(desired.get("verify_generation", 0))
                except (KubeError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    log.warning("%s: cluster agent: %s", self.role.cluster, exc)
                await asyncio.sleep(self.part.section.report_interval_seconds)
        finally:
            self.api.close()

    def _reported(self, node: KubeNode) -> ReportedNode:
        return ReportedNode(
            name=node.name[:63], state="ready" if node.ready else "notready",
            flags=["CORDONED"] if node.unschedulable else [],
            features=[f"{k}={v}"[:128] for k, v in sorted(node.labels.items())][:32],
            gres=f"{self.resource}:{node.gpus}" if self.resource else "",
        )  # fmt: skip

    async def _reconcile(self, nodes: list[KubeNode], members: list[str]) -> None:
        """kubectl cordon, drain, delete node: for every node that is no longer a member."""
        for node in nodes:
            if node.name not in members:
                if not node.unschedulable:
                    await self.api.cordon(node.name)
                    self.cordoned.add(node.name)
                elif await self.api.drain(node.name) == 0:
                    await self.api.delete_node(node.name)
                    self.cordoned.discard(node.name)
            elif node.name in self.cordoned and node.unschedulable:  # a removal undone
                await self.api.uncordon(node.name)
                self.cordoned.discard(node.name)

    async def _verify(
        self, nodes: list[KubeNode], members: list[str], generation: int
    ) -> Verification:
        if self.role.gpu_vendor and not await self.api.gpu_runtime_ready(self.role.gpu_vendor):
            return Verification(generation=generation, ok=False, error="GPU runtime not ready")
        good = sorted(
            n.name for n in nodes
            if n.name in members and n.ready and n.gpus == self.role.gpus
        )  # fmt: skip
        missing = sorted(set(members) - set(good))
        error = f"not Ready with {self.role.gpus} GPUs: {missing}" if missing else None
        return Verification(generation=generation, ok=not missing, hosts=good, error=error)


def _all_up(nodes: list[ReportedNode], members: list[str]) -> bool:
    up = {n.name for n in nodes if n.state in UP_STATES and "DRAIN" not in n.flags}
    return set(members) <= up
