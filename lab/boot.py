"""What a simulated node does after power-on: boot its disk, or network-boot per the boot contract
(docs/boot-contract.md) and phone home with the facts it derived."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml
from pydantic import ValidationError

from core.facts import BurnIn, CleanReport, HardwareRecord, MountFact, Nic, NodeFacts
from images.cluster_section import ClusterSecrets, ClusterSection
from lab.cmdline import BootConfigError, parse_cmdline, parse_ipxe
from lab.node import BootDev, SimNode

if TYPE_CHECKING:
    from lab.cluster import ClusterRunner

log = logging.getLogger(__name__)

KERNEL_DEFAULT_GOVERNOR = "schedutil"
# Debian's kernel is built with CONFIG_TRANSPARENT_HUGEPAGE_MADVISE.
KERNEL_DEFAULT_THP = "madvise"
SOFT_OFF_SECONDS = 0.5  # an OS takes a moment to shut down after the ACPI button
BOOT_START = "boot-start"  # under the NoCloud seed: what the OS posts first (boot-contract.md)


async def _get(client: aiohttp.ClientSession, url: str, what: str) -> str:
    try:
        async with client.get(url) as response:
            if response.status != 200:
                raise BootConfigError(f"{what}: GET {url} answered {response.status}")
            return await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BootConfigError(f"{what}: GET {url} failed: {exc!r}") from exc


async def _sha256(client: aiohttp.ClientSession, url: str, what: str) -> str:
    digest = hashlib.sha256()
    try:
        async with client.get(url) as response:
            if response.status != 200:
                raise BootConfigError(f"{what}: GET {url} answered {response.status}")
            async for chunk in response.content.iter_chunked(1 << 16):
                digest.update(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BootConfigError(f"{what}: GET {url} failed: {exc!r}") from exc
    return digest.hexdigest()


async def _post(
    client: aiohttp.ClientSession, url: str, what: str, token: str | None = None
) -> Any:
    """POST (no body, or a bearer token) and the JSON answer; 200 only."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with client.post(url, headers=headers) as response:
            if response.status != 200:
                text = (await response.text())[:200]
                raise BootConfigError(f"{what}: POST {url} answered {response.status} {text}")
            return await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise BootConfigError(f"{what}: POST {url} failed: {exc!r}") from exc


def _metalplane_section(text: str) -> dict[str, Any]:
    if not text.startswith("#cloud-config"):
        raise BootConfigError("user-data is not a #cloud-config document")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BootConfigError(f"user-data is not valid YAML: {exc}") from exc
    section = doc.get("metalplane") if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise BootConfigError("user-data has no metalplane section")
    phone_home = section.get("phone_home")
    if not isinstance(phone_home, dict) or not phone_home.get("url") or not phone_home.get("token"):
        raise BootConfigError("user-data has no metalplane.phone_home url/token")
    return section


def _mounts(doc: dict[str, Any]) -> list[MountFact]:
    """What cloud-init's `mounts` module mounts (fstab fields). A simulated node has no
    filesystems: it reports them mounted as asked, as /proc/mounts would show them."""
    entries = doc.get("mounts") or []
    if not isinstance(entries, list):
        raise BootConfigError("user-data `mounts` is not a list")
    found = []
    for entry in entries:
        if not isinstance(entry, list) or len(entry) < 3:
            raise BootConfigError(f"user-data mount entry {entry!r} is not fstab fields")
        found.append(MountFact(source=str(entry[0]), target=str(entry[1]), fstype=str(entry[2])))
    return found


PHONE_HOME_RETRY_SECONDS = 120.0  # an agent keeps trying through a platform restart

DEFAULT_STEPS = {"clean": "erase_disks", "inspect": "inspect,burn_in", "rescue": ""}


def _task(node: SimNode, task: dict[str, Any]) -> dict[str, Any]:
    """The agent's task (`clean`, `inspect`; `rescue`: none, the tenant's SSH server only): its
    steps in the order given, each adding its report to the facts; no task: nothing more in
    the facts."""
    kind = task.get("kind")
    if kind is None:
        return {}
    if kind not in DEFAULT_STEPS:
        raise BootConfigError(f"user-data names an unknown agent task {task!r}")
    found: dict[str, Any] = {}
    steps = [s for s in str(task.get("steps") or DEFAULT_STEPS[kind]).split(",") if s]
    node.ran_agent_steps(steps)
    for step in steps:
        if step == "erase_disks":
            found["clean"] = CleanReport.model_validate({"disks": node.wipe_disks()})
        elif step == "inspect":
            found["hardware"] = HardwareRecord.model_validate(node.inspect())
        elif step == "burn_in":
            found["burn_in"] = BurnIn.model_validate(node.burn_in())
        else:
            raise BootConfigError(f"user-data names an unknown step {step!r}")
    return found


@dataclass(frozen=True)
class ClusterPart:
    """The node's part in a cluster (its user-data) and the secrets it fetched for it."""

    section: ClusterSection
    secrets: ClusterSecrets


async def _cluster_part(
    section: dict[str, Any], client: aiohttp.ClientSession
) -> ClusterPart | None:
    """Parse `metalplane.cluster` and fetch its secrets with the boot token (before the
    phone-home spends it; once: a second request is refused), as the image's cloud-init
    would."""
    raw = section.get("cluster")
    if raw is None:
        return None
    try:
        cluster = ClusterSection.model_validate(raw)
    except ValidationError as exc:
        raise BootConfigError(f"user-data metalplane.cluster is invalid: {exc}") from exc
    token = str(section["phone_home"]["token"])
    answer = await _post(client, cluster.secrets_url, "cluster secrets", token)
    try:
        secrets = ClusterSecrets.model_validate(answer)
    except ValidationError as exc:
        raise BootConfigError(f"cluster secrets: {exc}") from exc
    return ClusterPart(cluster, secrets)


async def network_boot(
    node: SimNode, boot_url: str, client: aiohttp.ClientSession
) -> tuple[NodeFacts, ClusterPart | None]:
    """Run the PXE -> iPXE -> kernel -> agent -> cloud-init chain; return the facts it phoned
    home and the node's part in a cluster, if its user-data gives it one. The iPXE script is
    read only; the kernel's agent posts the boot start, then cloud-init fetches the user-data
    (once: it carries this boot's token)."""
    mac = node.macs[0]
    script = parse_ipxe(await _get(client, f"{boot_url}/boot/{mac}/ipxe", "iPXE script"))
    kernel_sha = await _sha256(client, script.kernel_url, "kernel")
    initrd_sha = None
    if script.initrd_url is not None:
        initrd_sha = await _sha256(client, script.initrd_url, "initrd")
    kernel = parse_cmdline(script.kernel_args)
    if kernel.nocloud_seed is None:
        raise BootConfigError("kernel command line has no ds=nocloud-net;s=<seed>")
    await _post(client, f"{kernel.nocloud_seed}{BOOT_START}", "boot start")
    user_data = await _get(client, f"{kernel.nocloud_seed}user-data", "user-data")
    section = _metalplane_section(user_data)
    task = section.get("task") or {}
    document = yaml.safe_load(user_data)
    mounts = _mounts(document)
    node.installed_keys([str(k) for k in document.get("ssh_authorized_keys") or []])
    cluster = None if task else await _cluster_part(section, client)
    tuning = section.get("tuning") or {}
    facts = NodeFacts(
        kernel_cmdline=script.kernel_args,
        kernel_sha256=kernel_sha,
        initrd_sha256=initrd_sha,
        cpu_governor=str(tuning.get("cpu_governor") or KERNEL_DEFAULT_GOVERNOR),
        hugepages=kernel.hugepages,
        transparent_hugepage=kernel.transparent_hugepage
        or (str(tuning["transparent_hugepage"]) if tuning.get("transparent_hugepage") else None)
        or KERNEL_DEFAULT_THP,
        iommu_mode=kernel.iommu_mode,
        bios=node.bios_snapshot(),
        system_vendor=node.vendor,
        system_model=node.model,
        nics=[Nic(name=f"eth{i}", mac=m) for i, m in enumerate(node.macs)],
        mounts=mounts,
        **_task(node, task),
    )
    await _phone_home(client, section["phone_home"], facts)
    return facts, cluster


async def _phone_home(
    client: aiohttp.ClientSession, target: dict[str, Any], facts: NodeFacts
) -> None:
    """POST the facts with the boot's token. The platform may be restarting (`make run`
    again, an API replica replaced): a request that did not get an answer is tried again for
    a while, as an agent does; an answer refusing the token is final."""
    deadline = asyncio.get_running_loop().time() + PHONE_HOME_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            async with client.post(
                str(target["url"]),
                json=facts.model_dump(mode="json"),
                headers={"Authorization": f"Bearer {target['token']}"},
            ) as response:
                if response.status < 300:
                    return
                text = (await response.text())[:200]
                if response.status < 500:
                    raise BootConfigError(f"phone-home refused: {response.status} {text}")
                failure = f"{response.status} {text}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = repr(exc)
        if asyncio.get_running_loop().time() + delay > deadline:
            raise BootConfigError(f"phone-home POST failed: {failure}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


class BootRunner:
    """Runs node boots as asyncio tasks on the lab's loop; BMC threads call in thread-safely."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        boot_url: str,
        boot_delay: float,
        clusters: ClusterRunner | None = None,
    ) -> None:
        self.loop = loop
        self.boot_url = boot_url.rstrip("/")
        self.boot_delay = boot_delay
        self.clusters = clusters  # runs a node's cluster role once it has booted
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30.0, connect=5.0))

    # PowerListener, called from any thread with the node lock held.
    def booting(self, node: SimNode, device: BootDev, generation: int) -> None:
        self.loop.call_soon_threadsafe(self._start, node, device, generation)

    def resetting(self, node: SimNode, device: BootDev, generation: int) -> None:
        """The running OS is gone at once and the node boots again."""
        self.stopped(node)
        self.booting(node, device, generation)

    def stopped(self, node: SimNode) -> None:
        self.loop.call_soon_threadsafe(self._cancel, node.node_id)
        if self.clusters is not None:  # its OS is gone, and the daemons with it
            self.loop.call_soon_threadsafe(self.clusters.stop_soon, node.node_id)

    def soft_off_requested(self, node: SimNode, generation: int) -> None:
        self.loop.call_soon_threadsafe(
            self.loop.call_later, SOFT_OFF_SECONDS, node.complete_soft_off, generation
        )

    def _cancel(self, node_id: str) -> None:
        task = self._tasks.pop(node_id, None)
        if task is not None:
            task.cancel()

    def _start(self, node: SimNode, device: BootDev, generation: int) -> None:
        self._cancel(node.node_id)
        task = self.loop.create_task(self._boot(node, device, generation))
        self._tasks[node.node_id] = task
        task.add_done_callback(lambda t: self._forget(node.node_id, t))

    def _forget(self, node_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(node_id) is task:
            del self._tasks[node_id]

    async def _boot(self, node: SimNode, device: BootDev, generation: int) -> None:
        # What its serial console shows (the BMC's Serial-over-LAN carries it): simulated
        # firmware and agent lines, not a kernel's.
        node.print_console(f"lab-sim BIOS {node.node_id}: POST, booting from {device}")
        await asyncio.sleep(self.boot_delay)  # POST, firmware, PXE ROM
        if device != "network":
            node.print_console("lab-sim: booted from disk")
            node.boot_finished(generation, error=None, phoned_home=False)
            return
        node.print_console(f"PXE boot on {node.macs[0]}: chaining the platform's iPXE script")
        try:
            facts, cluster = await network_boot(node, self.boot_url, self._client)
        except BootConfigError as exc:
            log.warning("%s: network boot failed: %s", node.node_id, exc)
            node.print_console(f"lab-sim: network boot failed: {exc}")
            node.boot_finished(generation, error=str(exc), phoned_home=False)
            return
        log.info("%s: phoned home (kernel %s)", node.node_id, facts.kernel_sha256)
        node.print_console(f"metalplane-agent: phoned home ({facts.kernel_cmdline})")
        node.boot_finished(generation, error=None, phoned_home=True)
        if facts.clean is None and facts.hardware is None:
            node.write_disks()  # the tenant's OS runs: its data lands on the disks
        if cluster is not None:
            if self.clusters is None:
                node.set_cluster_error("this lab runs no cluster roles")
            else:
                await self.clusters.apply(node, cluster)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.close()
