"""The boot service's cluster side (docs/boot-contract.md): a member's `metalplane.cluster`
user-data section, its secrets (fetched with its boot token, never in user-data), and the head
node's reports, which are kept and signalled to the cluster's running operation."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError, RPCStatusCode

from core.cluster_report import ClusterReport
from core.contracts import SIGNAL_CLUSTER_REPORT, ClusterReportSignal, cluster_workflow_id
from images.cluster_section import ClusterSecrets
from inventory import boot_sessions, clusters
from inventory.models import Cluster

from .. import cluster_roles
from ..boot_window import boot_ttl
from ..deps import Db, Temporal
from ..openapi import errors
from ..problems import Problem

log = logging.getLogger("metalplane.boot")
router = APIRouter(prefix="/boot", tags=["boot"])


REPORT = b"cluster-report:"  # what the head node's report token is signed for


def report_token(cluster_id: uuid.UUID, secret: bytes) -> str:
    return boot_sessions.sign_id(cluster_id, secret, REPORT)


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


@router.get(
    "/cluster-secrets",
    response_model=ClusterSecrets,
    summary="A cluster member's secrets, for its current boot",
    responses=errors(401, 404),
)
async def cluster_secrets(
    request: Request, db: Db, authorization: Annotated[str | None, Header()] = None
) -> ClusterSecrets:
    """Authorized by the current boot's phone-home token while the boot session is open (until
    the node is verified, or while it is active with a stateless image): the secrets reach only
    the node that network-booted for this cluster."""
    secret = request.app.state.boot_secret
    token = boot_sessions.boot_from_token(_bearer(authorization), secret)
    if token is None:
        raise _refused("token is malformed or not signed by this platform")
    boot = await boot_sessions.get_session(db, token.session_id)
    if boot is None or not boot_sessions.is_current_boot(boot, token, boot_ttl(request)):
        raise _refused(
            "the boot session is closed or expired, or the token is stale (the node booted"
            " again since, or its boot is too old)"
        )
    member = await cluster_roles.member_of(db, boot.node_id)
    if member is None:
        raise Problem(404, "not-a-member", "Not in a cluster", f"{boot.node_id} is in no cluster")
    report = report_token(member.cluster.id, secret) if member.head else None
    return cluster_roles.secrets(member, report)


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
    hostnames (drain and delete any other) and the test job generation asked for."""
    cluster_id = boot_sessions.signed_id(
        _bearer(authorization), request.app.state.boot_secret, REPORT
    )
    if cluster_id is None:
        raise _refused("token is malformed or not signed by this platform")
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
    return desired
