"""Cluster and network states: every state change the code asks for is in its transition table
(found by reading the calls, so a new one is checked too), set_state refuses a change the table
lacks (on a migrated schema), and the enums hold exactly the values of the CHECK constraints
(of the migrations and of the models) and of the OpenAPI document."""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import CheckConstraint, delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import openapi
from api.routes import clusters as cluster_routes
from api.routes import networks as network_routes
from inventory import clusters, networks, tenants
from inventory.models import Cluster, Event, Network, Tenant
from inventory.states import (
    CLUSTER_TRANSITIONS,
    NETWORK_TRANSITIONS,
    ClusterState,
    NetworkKind,
    NetworkState,
    may_start_from,
)
from tests.db import migrated_sessions

SCHEMA = "t_states"
ROOT = Path(__file__).resolve().parents[2]
# Where state changes are asked for (tests are left out: they may ask for refused ones).
SOURCES = ("api", "activities", "workflows", "inventory", "cli", "workers")


@dataclass(frozen=True)
class Change:
    """One set_state call (or NetworkStateChange) with literal arguments."""

    where: str
    to_state: str
    allowed_from: tuple[str, ...] | None  # None: the table's


def _literal(node: ast.expr | None) -> str | tuple[str, ...] | None:
    """A state string, `ClusterState.X` / `NetworkState.X`, or a tuple/list of them; None when
    the value is computed (a pass-through)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("ClusterState", "NetworkState")
    ):
        enum: type[StrEnum] = ClusterState if node.value.id == "ClusterState" else NetworkState
        return enum[node.attr].value
    if isinstance(node, ast.Tuple | ast.List):
        items = [_literal(e) for e in node.elts]
        if all(isinstance(i, str) for i in items):
            return tuple(i for i in items if isinstance(i, str))
    return None


def _argument(call: ast.Call, position: int, keyword: str) -> tuple[bool, ast.expr | None]:
    """(given, its expression) of a positional-or-keyword argument."""
    if len(call.args) > position:
        return True, call.args[position]
    for kw in call.keywords:
        if kw.arg == keyword:
            return True, kw.value
    return False, None


def _kind(call: ast.Call, module: str) -> str | None:
    """Which set_state the call is: "cluster", "network" or None (another call)."""
    func = call.func
    if isinstance(func, ast.Name) and func.id == "NetworkStateChange":
        return "network"
    if isinstance(func, ast.Attribute) and func.attr == "set_state":
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        return {"clusters": "cluster", "networks": "network"}.get(owner or "")
    if isinstance(func, ast.Name) and func.id == "set_state":  # inside the module itself
        return {"inventory/clusters.py": "cluster", "inventory/networks.py": "network"}.get(module)
    return None


def _changes() -> Iterator[tuple[str, Change | str]]:
    """(kind, the change) for each call; (kind, "file:line") when its arguments are computed."""
    for directory in SOURCES:
        for path in sorted((ROOT / directory).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            if "/migrations/" in module:
                continue
            for call in ast.walk(ast.parse(path.read_text(), module)):
                if not isinstance(call, ast.Call) or (kind := _kind(call, module)) is None:
                    continue
                where = f"{module}:{call.lineno}"
                # set_state(session, id, to_state, allowed_from, reason);
                # NetworkStateChange(network_id, state, allowed_from, reason)
                offset = 1 if isinstance(call.func, ast.Name) and call.func.id != "set_state" else 2
                to_keyword = "state" if offset == 1 else "to_state"
                _, to_node = _argument(call, offset, to_keyword)
                given, from_node = _argument(call, offset + 1, "allowed_from")
                to_state, allowed = _literal(to_node), _literal(from_node) if given else ()
                if not isinstance(to_state, str) or (given and not isinstance(allowed, tuple)):
                    yield kind, where
                    continue
                yield kind, Change(where, to_state, allowed if given else None)  # type: ignore[arg-type]


def _refused(
    changes: list[Change], transitions: Mapping[StrEnum, frozenset[StrEnum]], same_is_no_op: bool
) -> list[str]:
    """Each state a caller names that the table does not let reach its target."""
    wrong = []
    for change in changes:
        for start in change.allowed_from or ():
            if same_is_no_op and start == change.to_state:
                continue  # set_state returns before any check: nothing changes
            if change.to_state not in transitions.get(start, frozenset()):  # type: ignore[call-overload]
                wrong.append(f"{change.where}: {start} -> {change.to_state}")
    return wrong


def test_every_transition_the_code_asks_for_is_in_the_tables() -> None:
    found: dict[str, list[Change]] = {"cluster": [], "network": []}
    computed: list[str] = []
    for kind, change in _changes():
        if isinstance(change, Change):
            found[kind].append(change)
        else:
            computed.append(change)
    # The reading works: the API, the activities and the workflows each ask for changes.
    assert len(found["cluster"]) >= 6 and len(found["network"]) >= 6, found
    # Computed arguments only where the network activity passes a workflow's request on (its
    # NetworkStateChange calls are read above).
    assert all(c.startswith("activities/network.py:") for c in computed), computed
    for kind, changes in found.items():
        enum: type[StrEnum] = ClusterState if kind == "cluster" else NetworkState
        named = {c.to_state for c in changes} | {s for c in changes for s in c.allowed_from or ()}
        assert named <= {s.value for s in enum}, (kind, named)
    assert _refused(found["cluster"], CLUSTER_TRANSITIONS, same_is_no_op=True) == []  # type: ignore[arg-type]
    assert _refused(found["network"], NETWORK_TRANSITIONS, same_is_no_op=False) == []  # type: ignore[arg-type]


def test_the_tables_cover_every_state() -> None:
    for enum, table in ((ClusterState, CLUSTER_TRANSITIONS), (NetworkState, NETWORK_TRANSITIONS)):
        assert set(table) == set(enum)
        reached = {target for targets in table.values() for target in targets}
        assert reached <= set(enum)
        # Every state but the first (records are made `creating`) is reachable.
        assert set(enum) - {enum("creating")} <= reached
    # A cluster's same state again is a no-op in set_state: the table never lists it.
    assert all(s not in targets for s, targets in CLUSTER_TRANSITIONS.items())
    assert may_start_from(CLUSTER_TRANSITIONS, ClusterState.DELETING) == (
        ClusterState.CREATING, ClusterState.READY, ClusterState.FAILED,
    )  # fmt: skip
    # A caller narrows the table; a state it names that the table lacks adds nothing.
    assert may_start_from(
        CLUSTER_TRANSITIONS, ClusterState.DELETING, ("deleting", "ready", "failed", "scaling")
    ) == (ClusterState.READY, ClusterState.FAILED)


def test_the_api_lists_the_states() -> None:
    app = FastAPI()
    openapi.install(app)
    app.include_router(cluster_routes.router)
    app.include_router(network_routes.router)
    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert schemas["ClusterState"]["enum"] == [s.value for s in ClusterState]
    assert schemas["NetworkState"]["enum"] == [s.value for s in NetworkState]
    for path, model, enum in (
        ("/v1/clusters", "ClusterOut", "ClusterState"),
        ("/v1/networks", "NetworkOut", "NetworkState"),
    ):
        (state,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "state"]
        assert {"$ref": f"#/components/schemas/{enum}"} in state["schema"]["anyOf"]
        assert schemas[model]["properties"]["state"] == {"$ref": f"#/components/schemas/{enum}"}


def _quoted(definition: str) -> set[str]:
    return set(re.findall(r"'([^']*)'", definition))


def _model_check(model: type[Cluster] | type[Network], name: str) -> set[str]:
    (check,) = [
        c for c in model.__table__.constraints if isinstance(c, CheckConstraint) and c.name == name
    ]
    return _quoted(str(check.sqltext))


# --- on a migrated schema ----------------------------------------------------------------------

TENANT = "states"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, SCHEMA) as factory:
        async with factory.begin() as session:
            await session.execute(delete(Cluster))
            await session.execute(delete(Network))
            await session.execute(delete(Tenant))
            await tenants.create(session, Tenant(id=TENANT, display_name=TENANT))
        yield factory


async def _check_values(session: AsyncSession, name: str) -> set[str]:
    definition = await session.scalar(
        text(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE c.conname = :name AND n.nspname = :schema"
        ),
        {"name": name, "schema": SCHEMA},
    )
    assert definition is not None, name
    return _quoted(definition)


async def test_the_enums_are_the_check_constraints(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        for name, model, enum in (
            ("ck_clusters_state", Cluster, ClusterState),
            ("ck_networks_state", Network, NetworkState),
            ("ck_networks_kind", Network, NetworkKind),
        ):
            values = {s.value for s in enum}
            assert await _check_values(session, name) == values, name  # the migrations'
            assert _model_check(model, name) == values, name  # the models'


async def _cluster_in(session: AsyncSession, state: ClusterState) -> uuid.UUID:
    cluster = Cluster(
        id=uuid.uuid4(), tenant_id=TENANT, name=f"c-{uuid.uuid4().hex[:8]}", kind="slurm",
        node_count=1, gpu_model="h100", image="lab-sim", state=state.value,
    )  # fmt: skip
    session.add(cluster)
    await session.flush()
    return cluster.id


async def _network_in(session: AsyncSession, state: NetworkState) -> uuid.UUID:
    network_id = uuid.uuid4()
    session.add(
        Network(
            id=network_id, kind="tenant", tenant_id=TENANT, name=f"n-{network_id.hex[:8]}",
            cidr="10.9.0.0/24", l2vni=network_id.int % 10**6, state=state.value,
        )
    )  # fmt: skip
    await session.flush()
    return network_id


async def _events(session: AsyncSession, resource_id: uuid.UUID) -> list[tuple[str | None, str]]:
    rows = await session.execute(
        select(Event.from_state, Event.to_state)
        .where(Event.resource_id == str(resource_id))
        .order_by(Event.id)
    )
    return [(before, after) for before, after in rows.all()]


@pytest.mark.parametrize("start", list(ClusterState))
async def test_cluster_set_state_follows_the_table(
    sessions: async_sessionmaker[AsyncSession], start: ClusterState
) -> None:
    for target in ClusterState:
        async with sessions() as session:
            cluster_id = await _cluster_in(session, start)
            if target == start:  # no change, whatever the table and the caller say
                cluster = await clusters.set_state(session, cluster_id, target, ())
                assert cluster.state == start and await _events(session, cluster_id) == []
            elif target in CLUSTER_TRANSITIONS[start]:
                cluster = await clusters.set_state(session, cluster_id, target, reason="why")
                await session.flush()
                assert cluster.state == target
                assert cluster.last_error == ("why" if target == ClusterState.FAILED else None)
                assert await _events(session, cluster_id) == [(start, target)]
            else:
                # Refused, even when the caller names the state it is in.
                for allowed_from in (None, (start.value,)):
                    with pytest.raises(clusters.ClusterConflict, match=f"is {start}; {target}"):
                        await clusters.set_state(session, cluster_id, target, allowed_from)
                assert (await clusters.get(session, cluster_id)).state == start
            await session.rollback()


async def test_a_caller_narrows_the_table(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The scale workflow only confirms `scaling` (the API set it): a ready cluster, which the
    table lets scale, is refused; DeleteCluster does not take a cluster still `creating`."""
    async with sessions() as session:
        ready = await _cluster_in(session, ClusterState.READY)
        with pytest.raises(clusters.ClusterConflict, match=r"scaling needs one of: scaling$"):
            await clusters.set_state(session, ready, "scaling", ("scaling",))
        creating = await _cluster_in(session, ClusterState.CREATING)
        with pytest.raises(clusters.ClusterConflict, match=r"one of: ready, failed, deleting$"):
            await clusters.set_state(session, creating, "deleting", ("deleting", "ready", "failed"))
        network = await _network_in(session, NetworkState.READY)
        with pytest.raises(networks.NetworkConflict, match="is ready"):
            await networks.set_state(session, network, "failed", allowed_from=["creating"])
        await session.rollback()


@pytest.mark.parametrize("start", list(NetworkState))
async def test_network_set_state_follows_the_table(
    sessions: async_sessionmaker[AsyncSession], start: NetworkState
) -> None:
    for target in NetworkState:
        async with sessions() as session:
            network_id = await _network_in(session, start)
            # The same state and reason again is no change; a new reason is one.
            again = await networks.set_state(session, network_id, start, allowed_from=())
            assert again.state == start and await _events(session, network_id) == []
            if target in NETWORK_TRANSITIONS[start]:
                network = await networks.set_state(session, network_id, target, reason="why")
                assert network.state == target
                assert network.last_error == ("why" if target == NetworkState.FAILED else None)
                assert await _events(session, network_id) == [(start, target)]
            else:
                for allowed_from in (None, (start.value,)):
                    with pytest.raises(networks.NetworkConflict, match=f"is {start}"):
                        await networks.set_state(
                            session, network_id, target, allowed_from=allowed_from, reason="why"
                        )
                assert (await networks.get(session, network_id)).state == start
            await session.rollback()


async def test_a_network_is_removed_only_from_deleting(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        for state in NetworkState:
            network_id = await _network_in(session, state)
            if state == NetworkState.DELETING:
                await networks.remove(session, network_id)
                await session.flush()
                assert await session.get(Network, network_id) is None
            else:
                with pytest.raises(networks.NetworkConflict, match="not deleting"):
                    await networks.remove(session, network_id)
        await session.rollback()


async def test_an_unknown_state_is_no_state(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Refused before the database is asked (its CHECK constraint would refuse it at commit)."""
    async with sessions() as session:
        cluster_id = await _cluster_in(session, ClusterState.READY)
        with pytest.raises(ValueError, match="'deleted' is not a valid ClusterState"):
            await clusters.set_state(session, cluster_id, "deleted")
        network_id = await _network_in(session, NetworkState.READY)
        with pytest.raises(ValueError, match="'gone' is not a valid NetworkState"):
            await networks.set_state(session, network_id, "gone")
        await session.rollback()
