"""The boot service booting nodes talk to (docs/boot-contract.md): iPXE script, boot start and
user-data by MAC, boot artifacts, and the phone-home that signals the waiting workflow (or, for a
reboot of an active stateless node, starts its check).

Nodes have no JWT: the boot path is keyed by MAC and the phone-home by a single-use token per
boot. Reads change nothing; the boot start is a POST. A boot's user-data, which carries its
token, is handed out once; a second fetch is refused and leaves an event on the node
(docs/boot-threat-model.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Request, status
from fastapi.responses import FileResponse, PlainTextResponse
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import images
from core.contracts import (
    CHECK_NODE_BOOT,
    SIGNAL_PHONE_HOME,
    NodeBootInput,
    PhoneHomeSignal,
    node_boot_workflow_id,
)
from core.facts import NodeFacts
from core.settings import Settings
from images.mounts import StorageMount
from inventory import boot_sessions, clusters, discovery, nodes, skus, ssh_keys
from inventory.models import BootSession, Node
from inventory.states import NodeState

from ..boot_refusals import refuse_again
from ..boot_window import boot_ttl
from ..deps import Db, Temporal
from ..openapi import errors
from ..problems import Problem
from ..schemas import Mac
from .cluster_boot import cluster_section
from .nodes import NODE_ID, OPERATION

log = logging.getLogger("metalplane.boot")
router = APIRouter(prefix="/boot", tags=["boot"])
_BINARY = {"type": "string", "format": "binary"}
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def boot_base_url(request: Request) -> str:
    """The boot service as the node reached it: a node on another network than the operator
    (a VM behind NAT, a provisioning VLAN) gets URLs it can reach, whatever public_url says."""
    return str(request.base_url).rstrip("/")


async def _nothing_to_boot(db: Db, mac: str) -> Problem:
    node_id = await nodes.id_by_mac(db, mac)
    if node_id is None:
        return Problem(404, "unknown-mac", "Unknown MAC", f"no node has MAC {mac}")
    return Problem(404, "no-boot-session", "Nothing to boot", f"node {node_id} has no boot")


async def _open_boot(db: Db, mac: str) -> BootSession:
    boot = await boot_sessions.open_session_by_mac(db, mac)
    if boot is None:
        raise await _nothing_to_boot(db, mac)
    return boot


@router.get(
    "/{mac}/ipxe",
    response_class=PlainTextResponse,
    summary="iPXE script of a node",
    responses=errors(404),
)
async def ipxe_script(mac: Mac, request: Request, db: Db) -> str:
    """A pure read (iPXE's stock ROM can only GET): the boot starts when the booted OS posts
    its boot start. A MAC of no node is recorded as a discovered node (never booted)."""
    boot = await boot_sessions.open_session_by_mac(db, mac)
    if boot is None:
        problem = await _nothing_to_boot(db, mac)
        if problem.slug == "unknown-mac":
            address = request.client.host if request.client else None
            cap = request.app.state.settings.discovered_nodes_max
            if await discovery.record_boot(db, mac, address, cap=cap):
                log.info("discovered an unknown MAC %s booting from %s", mac, address)
            await db.commit()
        raise problem
    image = images.get_image(boot.image)
    return images.render_ipxe_with_args(
        image,
        public_url=boot_base_url(request),
        mac=mac,
        args=list(boot.kernel_args),
    )


@router.post(
    "/{mac}/boot-start",
    summary="A node's OS starts a network boot",
    responses=errors(404),
)
async def boot_start(mac: Mac, db: Db) -> dict[str, str | int]:
    """The booted OS's agent posts it first thing, before it fetches its user-data: the open
    session counts boot N, and the user-data fetched from now on carries this boot's token
    (the previous boot's token is stale)."""
    boot = await boot_sessions.start_boot(db, mac)
    if boot is None:
        raise await _nothing_to_boot(db, mac)
    await db.commit()
    log.info("boot %d of node %s (session %s) started", boot.boots, boot.node_id, boot.id)
    return {"boot": boot.boots, "boot_session": str(boot.id)}


@router.get(
    "/{mac}/user-data",
    response_class=PlainTextResponse,
    summary="cloud-init user-data",
    responses=errors(404, 409),
)
async def user_data(mac: Mac, request: Request, db: Db) -> str:
    """Once per boot: it carries the boot's token. A second fetch is refused, and recorded as
    an event on the node: someone else may hold the token."""
    boot = await _open_boot(db, mac)
    handed = await boot_sessions.hand_out_user_data(db, boot.id)
    if handed is None:
        number = boot.boots
        await refuse_again(
            db, boot, slug="user-data-already-fetched", title="User-data already fetched",
            event=f"boot {number}'s user-data was fetched twice: possibly by someone else"
            " (its token went to the first fetch)",
            detail=f"the user-data of boot {number} of node {boot.node_id} was handed out"
            " already; a new boot starts with a boot start",
        )  # fmt: skip
    image = images.get_image(handed.image)
    public_url = boot_base_url(request)
    token = boot_sessions.token_for(handed.id, handed.boots, request.app.state.boot_secret)
    if handed.task is not None:  # the agent's boot: only a rescue gets the tenant's keys
        node = await nodes.get(db, handed.node_id)
        keys = await ssh_keys.for_node(db, handed.node_id) if handed.task == "rescue" else []
        text = images.render_user_data(
            image, image.profile, public_url=public_url, node_id=handed.node_id,
            boot_session_id=str(handed.id), token=token,
            task=await _task(handed, request, node, mac), ssh_keys=keys,
        )  # fmt: skip
    else:
        text = images.render_user_data(
            image,
            image.profile,
            public_url=public_url,
            node_id=handed.node_id,
            boot_session_id=str(handed.id),
            token=token,
            cluster=await cluster_section(db, handed.node_id, public_url),
            mounts=[StorageMount(**m) for m in await clusters.storage_of(db, handed.node_id)],
            ssh_keys=await ssh_keys.for_node(db, handed.node_id),
        )
    await db.commit()  # the handout is recorded before the token leaves
    return text


async def _task(boot: BootSession, request: Request, node: Node, mac: str) -> dict[str, str | int]:
    """The agent's task in the user-data: its steps in order (a clean's from the node's SKU,
    docs/cleaning.md) as one comma-separated scalar (the lab image's agent is busybox sh),
    and the burn-in's parameters; a deploy's image and the disk boot's kernel arguments."""
    kind = boot.task
    assert kind is not None
    settings: Settings = request.app.state.settings
    if kind == "deploy":
        assert boot.deploy_image is not None
        return await _deploy_task(images.get_image(boot.deploy_image), request, node, mac)
    if kind == "rescue":  # the ramdisk and the tenant's SSH server; no step touches a disk
        return {"kind": "rescue", "steps": ""}
    steps = (
        skus.clean_steps(node.sku, settings.sku_catalog or skus.CATALOG)
        if kind == "clean"
        else list(skus.INSPECT_STEPS)
    )
    task: dict[str, str | int] = {"kind": kind, "steps": ",".join(steps)}
    if "burn_in" in steps and settings.burn_in_memtest_mib:
        task["memtest_mib"] = settings.burn_in_memtest_mib
    return task


async def _deploy_task(
    image: images.ImageDefinition, request: Request, node: Node, mac: str
) -> dict[str, str | int]:
    """What the agent writes to the disk (streamed from the boot service, its SHA-256 and
    size to check what the disk then holds) and the bootloader's entry: the image's kernel
    and initrd in the disk image's /boot, with the arguments its network boot would get."""
    disk_image = image.artifacts.disk_image
    assert disk_image is not None
    store = request.app.state.image_store
    path: Path = store.artifact_path(image, disk_image)
    public_url = boot_base_url(request)
    args = [
        *images.kernel_args(image, image.profile, list(node.extra_kernel_args)),
        f"ds=nocloud-net;s={images.seed_url(public_url, mac)}",
    ]
    return {
        "kind": "deploy",
        "steps": "deploy",
        "image_url": images.artifact_url(public_url, image, disk_image),
        "image_sha256": await asyncio.to_thread(store.sha256, image, disk_image),
        "image_bytes": (await asyncio.to_thread(path.stat)).st_size,
        "kernel": f"/boot/{image.artifacts.kernel}",
        "initrd": f"/boot/{image.artifacts.initrd}",
        "append": " ".join(args),
    }


@router.get(
    "/{mac}/meta-data",
    response_class=PlainTextResponse,
    summary="cloud-init meta-data",
    responses=errors(404),
)
async def meta_data(mac: Mac, db: Db) -> str:
    boot = await _open_boot(db, mac)
    return f"instance-id: {boot.id}\nlocal-hostname: {boot.node_id}\n"


@router.get(
    "/artifacts/{image_name}/{file_name}",
    summary="Kernel or initrd of an image",
    response_class=FileResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
        **errors(404),
    },
)
async def artifact(image_name: str, file_name: str, request: Request) -> FileResponse:
    if not _FILE_NAME.match(image_name) or not _FILE_NAME.match(file_name):
        raise Problem(404, "not-found", "No such artifact")
    missing = Problem(404, "not-found", "No such artifact", f"{image_name}/{file_name}")
    try:
        path: Path = request.app.state.image_store.artifact_path(
            images.get_image(image_name), file_name
        )
    except (images.UnknownImage, images.UnknownArtifact) as exc:
        raise missing from exc
    if not await asyncio.to_thread(path.is_file):
        raise missing
    return FileResponse(path, media_type="application/octet-stream")


@router.post(
    "/phone-home",
    status_code=status.HTTP_202_ACCEPTED,
    summary="A booted node reports",
    responses=errors(401, 409),
)
async def phone_home(
    facts: NodeFacts,
    request: Request,
    db: Db,
    client: Temporal,
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, str]:
    def refused(detail: str) -> Problem:
        return Problem(
            401,
            "invalid-boot-token",
            "Phone-home token refused",
            detail,
            headers={"WWW-Authenticate": "Bearer"},
        )

    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise refused("missing bearer token")
    boot_token = boot_sessions.boot_from_token(token.strip(), request.app.state.boot_secret)
    if boot_token is None:
        raise refused("token is malformed or not signed by this platform")
    # The token is spent only if the node's workflow hears of it: the UPDATE (which locks the
    # row against a concurrent phone-home) commits after the signal or start, else rolls back.
    boot = await boot_sessions.accept_phone_home(db, boot_token, boot_ttl(request))
    if boot is None:
        await _record_misuse(db, boot_token)
        raise refused(
            "token is stale (the node booted again since, or its boot is too old), was"
            " already used, or its boot session is closed or expired"
        )
    node = await nodes.get(db, boot.node_id)
    if node.state == NodeState.ACTIVE:  # a reboot of a stateless node: checked on its own
        await _start_boot_check(client, request, boot, boot_token.boot, facts)
    elif node.state in (
        NodeState.PROVISIONING, NodeState.REBOOTING, NodeState.CLEANING, NodeState.INSPECTING,
        NodeState.RESCUING,
    ):  # fmt: skip
        await _signal_operation(client, node, boot, boot_token.boot, facts)
    else:
        raise Problem(
            409, "no-waiting-operation", "No operation waits for this node",
            f"node {node.id} is {node.state}",
        )  # fmt: skip
    await db.commit()
    log.info("phone-home accepted for node %s (boot %s/%d)", boot.node_id, boot.id, boot.boots)
    return {"node_id": boot.node_id, "boot_session": str(boot.id), "boot": str(boot_token.boot)}


async def _record_misuse(db: Db, token: boot_sessions.BootToken) -> None:
    """A refused token of an open session that was stale (a later boot started) or spent:
    someone else may have started a boot, or replays the token. An event tells operators."""
    boot = await boot_sessions.get_session(db, token.session_id)
    if boot is None or not boot_sessions.is_open(boot):
        return
    if token.boot < boot.boots:
        why = f"boot {boot.boots} started since"
    elif token.boot == boot.phoned_home_boot:
        why = "it was used already"
    else:
        return  # too old: no sign of anyone else
    await boot_sessions.record_suspicious(
        db, boot, f"phone-home with the token of boot {token.boot} refused: {why}; possibly"
        " someone else started a boot or holds the token",
    )  # fmt: skip
    await db.commit()
    log.warning("node %s: phone-home of boot %d refused (%s)", boot.node_id, token.boot, why)


async def _signal_operation(
    client: Client, node: Node, boot: BootSession, number: int, facts: NodeFacts
) -> None:
    """Tell the operation that holds the node (ProvisionNode, RebootNode, ReleaseNode or
    CommissionNode)."""
    workflow_id = node.workflow_id or boot.workflow_id
    try:
        await client.get_workflow_handle(workflow_id).signal(
            SIGNAL_PHONE_HOME,
            PhoneHomeSignal(str(boot.id), facts.model_dump(mode="json"), number),
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Problem(
                409,
                "no-waiting-operation",
                "No operation waits for this node",
                f"workflow {workflow_id} is not running",
            ) from exc
        raise


async def _start_boot_check(
    client: Client, request: Request, boot: BootSession, number: int, facts: NodeFacts
) -> None:
    try:
        await client.start_workflow(
            CHECK_NODE_BOOT,
            NodeBootInput(boot.node_id, str(boot.id), number, facts.model_dump(mode="json")),
            id=node_boot_workflow_id(boot.node_id, str(boot.id), number),
            task_queue=request.app.state.baremetal_task_queue,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(NODE_ID, boot.node_id), SearchAttributePair(OPERATION, "boot")]
            ),
        )
    except WorkflowAlreadyStartedError:
        pass  # an earlier try of this request started it, then failed to commit
