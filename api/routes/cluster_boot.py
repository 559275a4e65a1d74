"""The boot service's cluster side (docs/boot-contract.md): a member's `metalplane.cluster`
user-data section, its secrets (posted for with its boot token, once per boot, never in
user-data), and the head node's reports, which are kept and signalled to the cluster's running
operation. The head node's report token expires and every accepted report's answer carries a
fresh one (docs/boot-threat-model.md)."""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Header, Request, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError, RPCStatusCode

from core.cluster_report import ClusterReport
from core.contracts import SIGNAL_CLUSTER_REPORT, ClusterReportSignal, cluster_workflow_id
from images.cluster_section import ClusterSecrets
from inventory import boot_sessions, clusters
from inventory.models import BootSession, Cluster

from .. import cluster_roles
from ..boot_refusals import refuse_again
from ..boot_window import boot_ttl
from ..deps import Db, Temporal
from ..openapi import errors
from ..problems import Problem

log = logging.getLogger("metalplane.boot")
router = APIRouter(prefix="/boot", tags=["boot"])


REPORT = b"cluster-report"  # what the head node's report token is signed for


def report_token(cluster_id: uuid.UUID, request: Request) -> str:
    """A report token for the cluster, good for `cluster_report_token_ttl_seconds` from now
    (at most: the expiry is in whole seconds)."""
    ttl = request.app.state.settings.cluster_report_token_ttl_seconds
    expires = math.floor(time.time() + ttl)
    return boot_sessions.sign_expiring(cluster_id, request.app.state.boot_secret, REPORT, expires)


def _refused(detail: str) -> Problem:
    return Problem(
        401, "invalid-boot-token", "Token refused", detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refused("missing bearer token")
    return token.strip()


async def cluster_section(db: AsyncSession, node_id: str, public_url: str) -> dict[str, Any] | None:
    """The node's part in its cluster for its user-data, or None when it is in none."""
    member = await cluster_roles.member_of(db, node_id)
    return None if member is None else cluster_roles.section(member, public_url)


_STALE = (
    "the boot session is closed or expired, or the token is stale (the node booted again"
    " since, or its boot is too old)"
)


@router.post(
    "/cluster-secrets",
    response_model=ClusterSecrets,
    response_model_exclude_none=True,
    summary="A cluster member's secrets, once per boot",
    responses=errors(401, 404, 409),
)
async def cluster_secrets(
    request: Request, db: Db, authorization: Annotated[str | None, Header()] = None
) -> ClusterSecrets:
    """Authorized by the current boot's phone-home token while the boot session is open (until
    the node is verified, or while it is active with a stateless image): the secrets reach only
    the node that network-booted for this cluster, once per boot; a second request is refused
    and leaves an event on the node. The Kubernetes CA key goes to the controller node once."""
    token = boot_sessions.boot_from_token(_bearer(authorization), request.app.state.boot_secret)
    if token is None:
        raise _refused("token is malformed or not signed by this platform")
    ttl = boot_ttl(request)
    boot = await boot_sessions.get_session(db, token.session_id)
    if boot is None or not boot_sessions.is_current_boot(boot, token, ttl):
        raise _refused(_STALE)
    member = await cluster_roles.member_of(db, boot.node_id)
    if member is None:
        raise Problem(404, "not-a-member", "Not in a cluster", f"{boot.node_id} is in no cluster")
    if await boot_sessions.hand_out_secrets(db, token, ttl) is None:
        await db.refresh(boot)
        if boot.secrets_boot != token.boot:  # a boot started meanwhile: the token went stale
            raise _refused(_STALE)
        await _already_fetched(db, boot, token.boot)
    cluster = member.cluster
    ca_key = (
        member.head
        and cluster.kind == "kubernetes"
        and await boot_sessions.hand_out_ca_key(db, cluster.id, boot.node_id)
    )
    report = report_token(cluster.id, request) if member.head else None
    secrets = cluster_roles.secrets(member, report, ca_key=ca_key)
    await db.commit()  # the handout is recorded before the secrets leave
    if ca_key:
        log.info("cluster %s: CA key handed to its controller %s", cluster.id, boot.node_id)
    return secrets


async def _already_fetched(db: AsyncSession, boot: BootSession, number: int) -> NoReturn:
    await refuse_again(
        db, boot, slug="cluster-secrets-already-fetched", title="Cluster secrets already fetched",
        event=f"boot {number}'s cluster secrets were asked for twice: possibly by someone else"
        " (they went to the first request)",
        detail=f"the cluster secrets of boot {number} of node {boot.node_id} were handed out"
        " already",
    )  # fmt: skip


@router.post(
    "/cluster-report",
    status_code=status.HTTP_200_OK,
    summary="The head node reports its cluster",
    responses=errors(401, 404),
)
async def cluster_report(
    body: ClusterReport,
    request: Request,
    db: Db,
    client: Temporal,
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Kept on the cluster (GET /v1/clusters/{id} shows it) and, when it changed, signalled to
    the cluster's running operation. The answer is what the cluster should be: its members'
    hostnames (drain and delete any other) and the test job generation asked for, and a fresh
    report token (`report_token`) to use from now on."""
    signed = boot_sessions.expiring_id(
        _bearer(authorization), request.app.state.boot_secret, REPORT
    )
    if signed is None:
        raise _refused("token is malformed or not signed by this platform")
    if signed.expired(time.time()):
        raise _refused("token expired: use the one the last accepted report's answer carried")
    cluster_id = signed.value
    cluster = await db.get(Cluster, cluster_id, with_for_update=True)
    if cluster is None:
        raise Problem(404, "not-found", "No such cluster", f"cluster {cluster_id} is gone")
    report = body.model_dump(mode="json")
    changed = cluster.report != report
    desired = await clusters.record_report(db, cluster_id, report)
    await db.commit()
    if changed:
        try:
            await client.get_workflow_handle(cluster_workflow_id(str(cluster_id))).signal(
                SIGNAL_CLUSTER_REPORT, ClusterReportSignal(report)
            )
        except RPCError as exc:  # no operation runs: the report is kept all the same
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
    return {**desired, "report_token": report_token(cluster_id, request)}
