"""Inventory activities: claim and release nodes, boot sessions, verification of facts.

Every state change is guarded in the database (see inventory.nodes), which makes each of these
safe to run twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

import images
from core.facts import HardwareRecord, NodeFacts
from images import mounts
from images.mounts import StorageMount
from inventory import boot_sessions, cleaning, clusters, gpu_diag, nodes, skus
from inventory.errors import InventoryError
from inventory.models import BootSession, Node
from inventory.states import NodeState

from .errors import bad_input, inventory_failure


@dataclass
class ClaimProvision:
    node_id: str
    workflow_id: str
    image: str
    boot_session_id: str


@dataclass
class ProvisionPlan:
    node_id: str
    vendor: str
    image: str
    tuning_profile: str
    stateless: bool = False  # network boot for good once verified (images.ImageDefinition)
    deployed: bool = False  # written to the disk by the agent, then booted from it


@dataclass
class ClaimRelease:
    node_id: str
    workflow_id: str


@dataclass
class VerifyNode:
    node_id: str
    workflow_id: str
    session_id: str
    facts: dict[str, Any]
    operation: str = "provision"  # or "reboot": the operation that holds the node


@dataclass
class ClaimReboot:
    node_id: str
    workflow_id: str


@dataclass
class RebootPlan:
    node_id: str
    stateless: bool  # it network boots its image again: wait for its phone-home and verify it
    boot_session_id: str | None
    claimed_from: str | None = None  # the node's state before this reboot claimed it


@dataclass
class CheckBoot:
    """A reboot of an active node phoned home (stateless images): check it as at activation."""

    node_id: str
    workflow_id: str
    session_id: str
    boot: int
    facts: dict[str, Any]


@dataclass
class FinishOperation:
    node_id: str
    workflow_id: str
    operation: str  # "provision" | "release" | "reboot"
    state: str
    reason: str | None = None
    cleaned: bool = False  # a release whose clean was verified: no tenant's data is left


@dataclass
class OpenCleaning:
    node_id: str
    workflow_id: str
    boot_session_id: str


@dataclass
class AgentBootPlan:
    node_id: str
    vendor: str
    image: str  # the agent's ramdisk
    tuning_profile: str  # its BIOS profile: the golden one the clean converges to


@dataclass
class OpenDeploy:
    """A boot session of `image` (the deploy's agent boot, or the deployed image's boot)."""

    node_id: str
    workflow_id: str
    boot_session_id: str
    image: str


@dataclass
class RecordDeploy:
    node_id: str
    workflow_id: str
    session_id: str
    image: str
    facts: dict[str, Any]


@dataclass
class ClaimRescue:
    """RescueNode's and UnrescueNode's claim, with the boot session it opens."""

    node_id: str
    workflow_id: str
    boot_session_id: str


@dataclass
class UnrescuePlan:
    node_id: str
    device: str  # its image boots: network (stateless) or disk
    boot_session_id: str | None  # the image's boot to wait for and verify; None: none phones home


@dataclass
class ClaimCommission:
    node_id: str
    workflow_id: str
    boot_session_id: str


@dataclass
class RecordInspection:
    node_id: str
    workflow_id: str
    session_id: str
    facts: dict[str, Any]
    bmc_firmware: str | None = None  # read from the BMC by the workflow (None: not read)


@dataclass
class RecordClean:
    node_id: str
    workflow_id: str
    session_id: str
    facts: dict[str, Any]


class InventoryActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        store: images.ImageStore,
        boot_session_ttl: timedelta,
        agent_image: str = "lab-sim",
        sku_catalog: Path = skus.CATALOG,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._ttl = boot_session_ttl
        self._agent_image = agent_image
        self._sku_catalog = sku_catalog

    def _image(self, name: str) -> images.ImageDefinition:
        try:
            image = images.get_image(name)
        except images.UnknownImage as exc:
            raise bad_input(str(exc), "UnknownImage") from exc
        if not self._store.is_ready(image):
            raise bad_input(
                f"image {name!r} has no boot artifacts in the image store", "ImageNotReady"
            )
        return image

    async def _open_boot(
        self, session: AsyncSession, node: Node, image: images.ImageDefinition,
        session_id: str, task: str | None = None, deploy_image: str | None = None,
    ) -> None:  # fmt: skip
        """Open the node's boot session of `image` (held by the node's workflow). An image
        deployed to the disk is not network booted: no digests of its kernel and initrd."""
        assert node.workflow_id is not None
        deployed = image.artifacts.disk_image is not None
        await boot_sessions.open_session(
            session,
            session_id=uuid.UUID(session_id),
            node_id=node.id,
            workflow_id=node.workflow_id,
            image=image.name,
            kernel_args=images.kernel_args(image, image.profile, list(node.extra_kernel_args)),
            kernel_sha256=None if deployed else self._store.sha256(image, image.artifacts.kernel),
            initrd_sha256=None if deployed else self._store.sha256(image, image.artifacts.initrd),
            ttl=self._ttl,
            task=task,
            deploy_image=deploy_image,
        )

    @activity.defn(name="claim_node_for_provision")
    async def claim_node_for_provision(self, request: ClaimProvision) -> ProvisionPlan:
        """Claim the node for this workflow and open the boot session its network boot will
        use, in one transaction. A repeat by the same workflow changes nothing."""
        image = self._image(request.image)
        try:
            async with self._sessions.begin() as session:
                node = await nodes.claim_for_provision(
                    session, request.node_id, workflow_id=request.workflow_id, image=image.name
                )
                await self._open_boot(session, node, image, request.boot_session_id)
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return ProvisionPlan(
            node_id=node.id,
            vendor=node.vendor,
            image=image.name,
            tuning_profile=image.tuning_profile,
            stateless=image.stateless,
            deployed=image.artifacts.disk_image is not None,
        )

    @activity.defn(name="verify_and_activate")
    async def verify_and_activate(self, request: VerifyNode) -> list[str]:
        """Compare the node's reported facts with its image's profile. Without mismatches the
        node becomes `active` in the same transaction; the mismatches are returned otherwise
        (the workflow then compensates)."""
        try:
            facts = NodeFacts.model_validate(request.facts)
        except ValidationError as exc:
            return [f"phone-home facts are malformed: {exc.error_count()} errors"]
        try:
            async with self._sessions.begin() as session:
                boot = await boot_sessions.get_session(session, uuid.UUID(request.session_id))
                if boot is None:
                    raise bad_input(
                        f"boot session {request.session_id} does not exist", "NoBootSession"
                    )
                mismatches = await _mismatches(session, request.node_id, boot, facts)
                if mismatches:
                    return mismatches
                if images.get_image(boot.image).stateless:
                    await boot_sessions.keep_open(session, boot.id)
                else:
                    await boot_sessions.close_sessions(session, request.node_id)
                await nodes.finish(
                    session,
                    request.node_id,
                    workflow_id=request.workflow_id,
                    operation=request.operation,
                    to_state=NodeState.ACTIVE,
                )
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return []

    @activity.defn(name="claim_node_for_reboot")
    async def claim_node_for_reboot(self, request: ClaimReboot) -> RebootPlan:
        """Claim the active node for this workflow (the API claims it first, under its cluster's
        lock; again after a failure: an SRE's reset), and say whether its image network boots
        every time, from which boot session."""
        try:
            async with self._sessions.begin() as session:
                node = await nodes.claim_for_reboot(
                    session, request.node_id, workflow_id=request.workflow_id
                )
                stateless = _is_stateless(node.image)
                boot = await boot_sessions.open_session_of(session, node.id) if stateless else None
                claimed_from = await nodes.reboot_claimed_from(
                    session, node.id, workflow_id=request.workflow_id
                )
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        if stateless and boot is None:
            raise bad_input(
                f"node {node.id} runs the stateless image {node.image} but has no open boot"
                " session to boot it from: provision it again",
                "NoBootSession",
            )
        return RebootPlan(
            node_id=node.id,
            stateless=stateless,
            boot_session_id=str(boot.id) if boot is not None else None,
            claimed_from=claimed_from,
        )

    @activity.defn(name="boots_so_far")
    async def boots_so_far(self, session_id: str) -> int:
        """How many boots the session has started (a reboot's phone-home has a higher number)."""
        async with self._sessions() as session:
            boot = await boot_sessions.get_session(session, uuid.UUID(session_id))
        if boot is None:
            raise bad_input(f"boot session {session_id} does not exist", "NoBootSession")
        return boot.boots

    @activity.defn(name="check_node_boot")
    async def check_node_boot(self, request: CheckBoot) -> str:
        """Verify the facts a reboot of an active node reported, as at its activation: they
        become the node's facts, and a mismatch fails the node with the reason (left powered:
        its tenant's work is not cut off by the platform; its session stays, so it can still
        boot until it is provisioned again or released). Each boot is checked once."""
        boot_no = f"boot {request.boot}"
        try:
            facts = NodeFacts.model_validate(request.facts)
        except ValidationError as exc:
            facts, malformed = None, f"phone-home facts are malformed: {exc.error_count()} errors"
        try:
            async with self._sessions.begin() as session:
                token = boot_sessions.BootToken(uuid.UUID(request.session_id), request.boot)
                boot = await boot_sessions.check_boot(session, token)
                if boot is None:
                    return f"{boot_no} was already checked"
                node = await nodes.get(session, request.node_id)
                if node.state != NodeState.ACTIVE or not boot_sessions.is_open(boot):
                    return f"{boot_no}: node is {node.state}; nothing to check"
                mismatches = (
                    [malformed]
                    if facts is None
                    else await _mismatches(session, request.node_id, boot, facts)
                )
                if not mismatches:
                    await nodes.record_reboot(
                        session, request.node_id, workflow_id=request.workflow_id,
                        reason=f"rebooted ({boot_no}); tuning verified",
                    )  # fmt: skip
                    return f"{boot_no}: tuning verified"
                reason = f"after a reboot ({boot_no}): tuning verification failed: " + "; ".join(
                    mismatches
                )
                await nodes.fail_after_reboot(
                    session, request.node_id, workflow_id=request.workflow_id, reason=reason
                )
                return reason
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn(name="claim_node_for_release")
    async def claim_node_for_release(self, request: ClaimRelease) -> None:
        try:
            async with self._sessions.begin() as session:
                await nodes.claim_for_release(
                    session, request.node_id, workflow_id=request.workflow_id
                )
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn(name="open_cleaning_boot")
    async def open_cleaning_boot(self, request: OpenCleaning) -> AgentBootPlan:
        """Open the boot session of the node's cleaning: its agent image (the node's own, else
        the platform's) with the task `clean`. Held by this release; a repeat changes nothing."""
        try:
            async with self._sessions.begin() as session:
                node = await nodes.get(session, request.node_id)
                if node.workflow_id != request.workflow_id or node.operation != "release":
                    raise bad_input(
                        f"node {node.id} is not held by release {request.workflow_id}",
                        "NotHeld",
                    )
                image = self._image(node.agent_image or self._agent_image)
                await self._open_boot(session, node, image, request.boot_session_id, "clean")
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return AgentBootPlan(node.id, node.vendor, image.name, image.tuning_profile)

    def _held_by_provision(self, node: Node, workflow_id: str) -> None:
        if node.workflow_id != workflow_id or node.operation != "provision":
            raise bad_input(f"node {node.id} is not held by provision {workflow_id}", "NotHeld")

    @activity.defn(name="open_deploy_boot")
    async def open_deploy_boot(self, request: OpenDeploy) -> AgentBootPlan:
        """Open the boot session of a direct deploy: the node's agent image with the task
        `deploy`, naming the image it writes to the disk. A repeat changes nothing."""
        image = self._image(request.image)
        try:
            async with self._sessions.begin() as session:
                node = await nodes.get(session, request.node_id)
                self._held_by_provision(node, request.workflow_id)
                agent = self._image(node.agent_image or self._agent_image)
                await self._open_boot(
                    session, node, agent, request.boot_session_id, "deploy", image.name
                )
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return AgentBootPlan(node.id, node.vendor, agent.name, image.tuning_profile)

    @activity.defn(name="record_deploy")
    async def record_deploy(self, request: RecordDeploy) -> list[str]:
        """Judge the deploy boot's report: the image on the disk with the store's SHA-256
        and a bootloader installed; the problems, or none, and then an event. The session is
        closed either way; the event is written only by the run that closed it."""
        image = self._image(request.image)
        try:
            facts = NodeFacts.model_validate(request.facts)
        except ValidationError as exc:
            return [f"the deploy report is malformed: {exc.error_count()} errors"]
        disk_image = image.artifacts.disk_image
        assert disk_image is not None
        want = self._store.sha256(image, disk_image)
        report = facts.deploy
        if report is None:
            found = ["the deploy boot phoned home without a deploy report"]
        elif report.error:
            found = [f"deploying {image.name} to {report.device or 'the disk'}: {report.error}"]
        elif report.sha256 != want:
            found = [f"{report.device} holds SHA-256 {report.sha256}; {image.name} is {want}"]
        elif not report.bootloader:
            found = [f"no bootloader was installed on {report.device}"]
        else:
            found = []
        try:
            async with self._sessions.begin() as session:
                closed = await boot_sessions.close_session(session, uuid.UUID(request.session_id))
                if closed and not found and report is not None:
                    await nodes.record_note(
                        session, request.node_id, workflow_id=request.workflow_id,
                        reason=f"deployed {image.name} to {report.device}: SHA-256 {want}"
                        f" read back from the disk; bootloader {report.bootloader}",
                    )  # fmt: skip
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return found

    @activity.defn(name="open_disk_boot")
    async def open_disk_boot(self, request: OpenDeploy) -> None:
        """Open the boot session of the deployed image's first boot from the disk: its
        user-data and the phone-home verified as a network boot's. A repeat changes nothing."""
        image = self._image(request.image)
        try:
            async with self._sessions.begin() as session:
                node = await nodes.get(session, request.node_id)
                self._held_by_provision(node, request.workflow_id)
                await self._open_boot(session, node, image, request.boot_session_id)
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn(name="claim_node_for_rescue")
    async def claim_node_for_rescue(self, request: ClaimRescue) -> AgentBootPlan:
        """Claim the active node (`rescuing`) and open its rescue boot: the agent image with
        the task `rescue` (its user-data carries the tenant's keys; the agent touches no
        disk). The BIOS stays on the image's profile. A repeat changes nothing."""
        try:
            async with self._sessions.begin() as session:
                node = await nodes.claim_for_rescue(
                    session, request.node_id, workflow_id=request.workflow_id
                )
                agent = self._image(node.agent_image or self._agent_image)
                await self._open_boot(session, node, agent, request.boot_session_id, "rescue")
                profile = self._image(node.image).tuning_profile if node.image else None
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return AgentBootPlan(node.id, node.vendor, agent.name, profile or agent.tuning_profile)

    @activity.defn(name="claim_node_for_unrescue")
    async def claim_node_for_unrescue(self, request: ClaimRescue) -> UnrescuePlan:
        """Claim the node in rescue (`rebooting`) and end its rescue boot; an image that phones
        home (stateless, or deployed to the disk) gets its boot session opened again, to be
        verified as at activation. A repeat changes nothing."""
        try:
            async with self._sessions.begin() as session:
                node = await nodes.claim_for_unrescue(
                    session, request.node_id, workflow_id=request.workflow_id
                )
                assert node.image is not None  # an active node's
                image = self._image(node.image)
                deployed = image.artifacts.disk_image is not None
                if image.stateless or deployed:
                    await self._open_boot(session, node, image, request.boot_session_id)
                else:
                    await boot_sessions.close_sessions(session, node.id)
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return UnrescuePlan(
            node.id,
            "network" if image.stateless else "disk",
            request.boot_session_id if image.stateless or deployed else None,
        )

    @activity.defn(name="claim_node_for_commission")
    async def claim_node_for_commission(self, request: ClaimCommission) -> AgentBootPlan:
        """Claim the free node (`inspecting`) and open its inspection boot: the agent image
        with the task `inspect`. A repeat changes nothing."""
        try:
            async with self._sessions.begin() as session:
                node = await nodes.claim_for_commission(
                    session, request.node_id, workflow_id=request.workflow_id
                )
                image = self._image(node.agent_image or self._agent_image)
                await self._open_boot(session, node, image, request.boot_session_id, "inspect")
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return AgentBootPlan(node.id, node.vendor, image.name, image.tuning_profile)

    @activity.defn(name="record_inspection")
    async def record_inspection(self, request: RecordInspection) -> list[str]:
        """Keep the hardware the inspection found as the node's record and check it against
        the node's SKU (the enrolled one, else the catalog's match, then kept): the
        differences, or none. The session is closed; the event is written once."""
        try:
            facts = NodeFacts.model_validate(request.facts)
        except ValidationError as exc:
            return [f"the hardware report is malformed: {exc.error_count()} errors"]
        if facts.hardware is None:
            return ["the inspection boot phoned home without a hardware record"]
        if request.bmc_firmware is not None:
            facts.hardware.bmc_firmware_version = request.bmc_firmware
        try:
            async with self._sessions.begin() as session:
                node = await nodes.get(session, request.node_id)
                node.hardware = facts.hardware.model_dump(mode="json")
                try:
                    sku = self._sku_of(node)
                except skus.UnknownSku as exc:
                    return [str(exc)]
                if sku is None:
                    return [
                        f"no SKU fits {node.vendor} {node.model} with"
                        f" {node.gpu_count} x {node.gpu_model or 'no GPU'}: enroll it with"
                        " `sku`, or add one to the SKU catalog"
                    ]
                node.sku = sku.name
                found = skus.differences(sku, facts.hardware)
                diag, diag_failures = _gpu_diag(facts)
                memtest, memtest_failures = _memtest(facts)
                found += diag_failures + memtest_failures
                closed = await boot_sessions.close_session(session, uuid.UUID(request.session_id))
                if closed and not found:
                    await nodes.record_note(
                        session, request.node_id, workflow_id=request.workflow_id,
                        reason=f"inspected: {_describe(facts.hardware)}; matches SKU {sku.name};"
                        f" {diag}; {memtest}",
                    )  # fmt: skip
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return found

    @activity.defn(name="record_clean")
    async def record_clean(self, request: RecordClean) -> list[str]:
        """Judge the cleaning boot's report (inventory.cleaning; with its SKU's clean steps,
        also the hardware and firmware against the SKU and the burn-in): the problems, or
        none, and
        then an event saying what was wiped and how. The session is closed either way, and
        the event written only by the run that closed it: a repeat adds nothing."""
        try:
            facts = NodeFacts.model_validate(request.facts)
        except ValidationError as exc:
            return [f"the clean report is malformed: {exc.error_count()} errors"]
        found = cleaning.problems(facts.clean)
        try:
            async with self._sessions.begin() as session:
                node = await nodes.get(session, request.node_id)
                checked, differences = self._checked_against_sku(node, facts)
                diag, diag_failures = _gpu_diag(facts)
                memtest, memtest_failures = _memtest(facts)
                found += differences + diag_failures + memtest_failures
                if facts.hardware is not None:
                    node.hardware = facts.hardware.model_dump(mode="json")
                closed = await boot_sessions.close_session(session, uuid.UUID(request.session_id))
                if closed and not found and facts.clean is not None:  # once: not on a repeat
                    ran = [cleaning.summary(facts.clean), checked]
                    if facts.burn_in is not None:
                        ran += [diag, memtest]
                    await nodes.record_note(
                        session, request.node_id, workflow_id=request.workflow_id,
                        reason="; ".join(r for r in ran if r),
                    )  # fmt: skip
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        return found

    def _sku_of(self, node: Node) -> skus.Sku | None:
        """The node's SKU: the enrolled one (UnknownSku if gone), else the catalog's match."""
        if node.sku:
            return skus.get(node.sku, self._sku_catalog)
        return skus.match(node.vendor, node.model, node.gpu_model, self._sku_catalog)

    def _checked_against_sku(self, node: Node, facts: NodeFacts) -> tuple[str, list[str]]:
        """A clean's inspection against the node's SKU, firmware included: what it says, and
        the differences (a GPU lost in the last tenant's time keeps the node out)."""
        if facts.hardware is None:
            return "", []
        try:
            sku = self._sku_of(node)
        except skus.UnknownSku as exc:
            return "", [str(exc)]
        if sku is None:
            return "hardware recorded (no SKU fits the node to check it against)", []
        # The agent cannot read the BMC: its firmware as the last commissioning read it.
        facts.hardware.bmc_firmware_version = (node.hardware or {}).get("bmc_firmware_version")
        differences = skus.differences(sku, facts.hardware)
        return f"hardware and firmware match SKU {sku.name}", differences

    @activity.defn(name="finish_operation")
    async def finish_operation(self, request: FinishOperation) -> None:
        """End the operation: close boot sessions (not after a reboot: a stateless node's session
        is what it boots, and a reset of the failed reboot needs it) and set the final state.
        Release also clears what the last tenant left: image, facts and tenant."""
        values: dict[str, object] = {}
        if request.operation == "release":
            values = {"image": None, "facts": None, "tenant_id": None}
            if request.cleaned:
                values |= {"needs_cleaning": False, "maintenance_reason": None}
        if request.operation == "commission" and request.state == NodeState.AVAILABLE:
            values["maintenance_reason"] = None
        if request.state == NodeState.MAINTENANCE:
            values["maintenance_reason"] = request.reason
        try:
            async with self._sessions.begin() as session:
                if request.operation != "reboot":  # a stateless node keeps its image to boot
                    await boot_sessions.close_sessions(session, request.node_id)
                await nodes.finish(
                    session,
                    request.node_id,
                    workflow_id=request.workflow_id,
                    operation=request.operation,
                    to_state=NodeState(request.state),
                    reason=request.reason,
                    values=values,
                )
        except InventoryError as exc:
            raise inventory_failure(exc) from exc


def _gpu_diag(facts: NodeFacts) -> tuple[str, list[str]]:
    """What the burn-in's GPU diagnostic said, and its failures (each a difference)."""
    run = facts.burn_in.gpu_diag if facts.burn_in else None
    if run is None:
        none = not (facts.hardware and facts.hardware.gpus)
        return ("no GPU to diagnose" if none else "GPU diagnostics not run by the agent"), []
    try:
        results = gpu_diag.parse_dcgmi(run.output)
    except gpu_diag.GpuDiagError as exc:
        return "", [f"GPU diagnostics ({run.command}, exit {run.exit_code}): {exc}"]
    failed = gpu_diag.failures(results)
    said = f"GPU diagnostics ({run.command}): {len(results)} results, none failed"
    return said, [f"GPU diagnostics: {f}" for f in failed]


def _memtest(facts: NodeFacts) -> tuple[str, list[str]]:
    """The burn-in's memory test: memtester's exit code is its verdict."""
    run = facts.burn_in.memtest if facts.burn_in else None
    if run is None:
        return "no memory test run by the agent", []
    if run.exit_code != 0:
        return "", [f"memory test ({run.command}) exited {run.exit_code}: {run.output.strip()}"]
    return f"memory test ({run.command}) passed", []


def _describe(hardware: HardwareRecord) -> str:
    gpus = f"{len(hardware.gpus)} GPUs" if hardware.gpus else "no GPU"
    return (
        f"{hardware.cpus} CPUs, {hardware.memory_bytes / skus.GIB:.1f} GiB, "
        f"{len(hardware.disks)} disks, {len(hardware.nics)} NICs, {gpus}"
    )


def _is_stateless(image: str | None) -> bool:
    """Whether the node's image network boots every time (an image gone from the catalog: its
    disk boots)."""
    try:
        return image is not None and images.get_image(image).stateless
    except images.UnknownImage:
        return False


async def _mismatches(
    session: AsyncSession, node_id: str, boot: BootSession, facts: NodeFacts
) -> list[str]:
    """The node's facts become `facts`; what in them differs from its boot's image, profile and
    storage mounts."""
    node = await nodes.get(session, node_id)
    node.facts = facts.model_dump(mode="json")
    image = images.get_image(boot.image)
    found = images.verify(
        image,
        image.profile,
        facts,
        vendor=node.vendor,
        expected_kernel_sha256=boot.kernel_sha256,
        expected_initrd_sha256=boot.initrd_sha256,
    )
    storage = await clusters.storage_of(session, node_id)
    found += mounts.check([StorageMount(**m) for m in storage], facts.mounts)
    return [m.message for m in found]
