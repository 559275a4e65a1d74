"""The FastAPI application: operators' API and the nodes' boot service."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from temporalio.client import Client

import images
from core.contracts import TASK_QUEUE_BAREMETAL, TASK_QUEUE_CLUSTER, TASK_QUEUE_NETWORK
from core.secrets import boot_token_secret, console_relay_secret
from core.settings import Settings, get_settings
from identity import dev_issuer
from identity.oidc import ClaimNames, OidcValidator
from inventory.db import create_engine, session_factory

from . import openapi, problems, request_log
from .boundary import Boundary
from .event_hub import EventHub
from .idempotency import idempotent_post
from .problems import problem_response
from .ratelimit import TokenBuckets
from .routes import audit as audit_routes
from .routes import boot, cluster_boot, health
from .routes import clusters as clusters_routes
from .routes import consoles as consoles_routes
from .routes import dev_issuer as dev_issuer_routes
from .routes import discovered as discovered_routes
from .routes import events as events_routes
from .routes import fabric as fabric_routes
from .routes import images as images_routes
from .routes import networks as networks_routes
from .routes import nodes as nodes_routes
from .routes import rescue as rescue_routes
from .routes import ssh_keys as ssh_keys_routes
from .routes import tenants as tenants_routes

log = logging.getLogger("metalplane.api")


async def _connect_temporal(settings: Settings) -> Client:
    """Wait for Temporal (it may still be starting next to us), then connect."""
    for attempt in range(60):
        try:
            return await Client.connect(
                settings.temporal_address, namespace=settings.temporal_namespace
            )
        except RuntimeError:
            if attempt == 59:
                raise
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


# A caller's X-Request-ID: printable ASCII without spaces, as most tracing systems make them.
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def create_app(
    settings: Settings | None = None, *, baremetal_task_queue: str | None = None
) -> FastAPI:
    settings = settings or get_settings()
    request_log.install_record_factory()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url:
            raise RuntimeError("METALPLANE_DATABASE_URL is not set")
        engine = create_engine(
            settings.database_url,
            schema=settings.database_schema,
            pool_size=settings.api_database_pool_size,
        )
        app.state.sessions = session_factory(engine)
        app.state.temporal = await _connect_temporal(settings)
        app.state.event_hub = EventHub(
            settings.database_url, settings.database_schema, app.state.sessions
        )
        await app.state.event_hub.start()
        yield
        await app.state.event_hub.stop()
        await engine.dispose()

    app = FastAPI(
        title="metalplane",
        version="0.1.0",
        description="Control plane of a multi-tenant bare-metal GPU cloud.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.baremetal_task_queue = baremetal_task_queue or TASK_QUEUE_BAREMETAL
    app.state.network_task_queue = TASK_QUEUE_NETWORK
    app.state.cluster_task_queue = TASK_QUEUE_CLUSTER
    app.state.image_store = images.ImageStore(settings.images_dir)
    app.state.boot_secret = boot_token_secret(settings)
    app.state.console_secret = console_relay_secret(settings)  # read once, not per viewer
    app.state.token_validator = OidcValidator(
        settings.issuer_url,
        audience=settings.jwt_audience,
        claims=ClaimNames(
            roles=settings.oidc_roles_claim,
            tenant=settings.oidc_tenant_claim,
            groups=settings.oidc_groups_claim,
        ),
        refresh_interval=settings.oidc_jwks_refresh_seconds,
    )
    app.state.rate_limiter = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)
    if settings.dev_issuer_enabled:
        dev_issuer.ensure_keypair(settings.dev_issuer_key_file)
        app.include_router(dev_issuer_routes.router)
    problems.install(app)
    openapi.install(app)
    app.include_router(health.router)
    app.include_router(nodes_routes.router)
    app.include_router(discovered_routes.router)
    app.include_router(images_routes.router)
    app.include_router(boot.router)
    app.include_router(cluster_boot.router)
    app.include_router(audit_routes.router)
    app.include_router(tenants_routes.router)
    app.include_router(ssh_keys_routes.router)
    app.include_router(fabric_routes.router)
    app.include_router(networks_routes.router)
    app.include_router(clusters_routes.router)
    app.include_router(events_routes.router)
    app.include_router(consoles_routes.router)
    app.include_router(rescue_routes.router)

    # Outermost last: request ids, then the boundary (checks, authentication, body limit),
    # then idempotent replays, then the routes.
    app.middleware("http")(idempotent_post)
    app.add_middleware(Boundary, max_body_bytes=settings.max_request_body_bytes)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Ours, always (logs, audit log, reply); the caller's beside it when it is sane.
        request.state.request_id = ours = uuid.uuid4().hex
        given = request.headers.get("x-request-id")
        if given is not None and not _CLIENT_REQUEST_ID.fullmatch(given):
            response: Response = problem_response(
                400, "invalid-request-id", "Invalid X-Request-ID",
                "use 1-128 printable ASCII characters without spaces",
            )  # fmt: skip
        else:
            request.state.client_request_id = given
            response = await request_log.log_request(request, ours, call_next)
            if given is not None:
                response.headers["X-Client-Request-ID"] = given
        response.headers["X-Request-ID"] = ours
        return response

    return app
