"""Tenant isolation as a matrix: every resource kind x action x role x target (acme's resource
owned by ann, globex's, a free node, a missing id), through the API. The answers the policy
promises are restated here on their own (`expect`), not computed by the policy under test:

- a caller whose roles cannot read a kind gets 403 whatever the id;
- a record the caller may not see (another tenant's, another member's, a node its tenant does
  not hold) answers 404 with exactly the answer a missing id gets;
- a visible record the caller may not act on answers 403; anything else is the route's own
  answer (2xx, 409, ...).

The same rule holds for ids in request bodies (a cluster's network, an attachment's node) and
for each event stream. No workflow runs (no workers): only the API's decisions are under test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.platform import Platform, Ports, running_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")
PORTS = Ports(api=18296, lab_control=18396, redfish=18397, ipmi_base=19760)
GPU = "H100 80GB HBM3"
PLATFORM_ROLES = ("platform-admin", "platform-viewer", "operator")
PRINCIPALS: dict[str, tuple[str, str | None, str]] = {  # name -> (role, tenant, subject)
    "platform-admin": ("platform-admin", None, "pat"),
    "platform-viewer": ("platform-viewer", None, "pia"),
    "operator": ("operator", None, "otto"),
    "tenant-admin": ("tenant-admin", "acme", "ada"),
    "owner": ("tenant-member", "acme", "ann"),
    "other-member": ("tenant-member", "acme", "bob"),
    "viewer": ("viewer", "acme", "val"),
}
MISSING = {"tenant": "no-such-tenant", "node": "lab-999"}


def expect(who: str, kind: str, target: str, action: str) -> int | str:
    """The promised answer: 403, 404, or "ok" (the route's own answer: never 403 nor the
    policy's 404 `not-found`; e.g. 404 `not-attached` for a node on no network)."""
    platform = who in PLATFORM_ROLES
    reads = kind == "node" or who != "operator"
    if not reads:
        return 403
    if target == "missing":
        return 404
    if not platform:
        seen = target == "acme" and (kind == "tenant" or who != "other-member")
        if not seen:
            return 404
    if action == "read":
        return "ok"
    allowed = {
        "platform-admin": {
            "node": {"operate", "power"},
            "tenant": {"update", "delete"},
            "network": {"delete", "operate"},
            "cluster": {"delete"},
            "ssh-key": {"delete"},
        },
        "operator": {"node": {"operate", "power"}},
        "tenant-admin": {
            **{k: {"update", "delete", "operate"} for k in ("network", "cluster", "ssh-key")},
            "node": {"power"},  # reboots the nodes its tenant holds
        },
        "owner": {
            **{k: {"update", "delete", "operate"} for k in ("network", "cluster", "ssh-key")},
            "node": {"power"},
        },
    }.get(who, {})
    return "ok" if action in allowed.get(kind, set()) else 403


@dataclass
class World:
    platform: Platform
    tokens: dict[str, str]
    ids: dict[tuple[str, str], str]  # (kind, target) -> id

    def api(self, who: str) -> httpx.AsyncClient:
        return self.platform.api(self.tokens[who])


def ssh_key(comment: str) -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + f" {comment}"


async def created(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with running_platform(
        name="t_matrix", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("matrix"), ports=PORTS, nodes=4,
        lab_gpu_model=GPU, in_process_workers=(),
    ) as platform:  # fmt: skip
        await platform.enroll_lab()
        tokens = {
            name: platform.mint(role, tenant=tenant, subject=subject)
            for name, (role, tenant, subject) in PRINCIPALS.items()
        }
        tokens["globex"] = platform.mint("tenant-member", tenant="globex", subject="gil")
        ids: dict[tuple[str, str], str] = {}
        async with platform.api(tokens["platform-admin"]) as api:
            for tenant in ("acme", "globex"):
                await created(await api.post("/v1/tenants", json={
                    "id": tenant, "display_name": tenant, "quotas": {"nodes": 2, "gpus": 16},
                }))  # fmt: skip
                ids["tenant", tenant] = tenant
        for target, token in (("acme", tokens["owner"]), ("globex", tokens["globex"])):
            async with platform.api(token) as api:
                key = await created(await api.post(
                    "/v1/ssh-keys", json={"name": "k", "public_key": ssh_key(target)}
                ))  # fmt: skip
                network = await created(await api.post("/v1/networks", json={"name": "lan"}))
                cluster = await created(await api.post("/v1/clusters", json={
                    "name": "c", "kind": "slurm", "node_count": 1, "gpu_model": GPU,
                    "image": "lab-sim",
                }))  # fmt: skip
            ids["ssh-key", target] = key["id"]
            ids["network", target] = network["id"]
            ids["cluster", target] = cluster["id"]
            ids["node", target] = cluster["members"][0]["node_id"]
        held = {ids["node", "acme"], ids["node", "globex"]}
        ids["node", "free"] = sorted({f"lab-00{i}" for i in range(1, 5)} - held)[0]
        yield World(platform, tokens, ids)


def calls(kind: str, resource_id: str, world: World) -> list[tuple[str, str, str, Any]]:
    """(action, method, path, body) of every API call that names a `kind` record by id."""
    acme_node = world.ids["node", "acme"]
    return {
        "tenant": [
            ("read", "GET", f"/v1/tenants/{resource_id}", None),
            ("update", "PATCH", f"/v1/tenants/{resource_id}", {"display_name": "x"}),
            ("delete", "DELETE", f"/v1/tenants/{resource_id}", None),
        ],
        "ssh-key": [
            ("read", "GET", f"/v1/ssh-keys/{resource_id}", None),
            ("update", "PATCH", f"/v1/ssh-keys/{resource_id}", {"name": "renamed"}),
        ],
        "network": [
            ("read", "GET", f"/v1/networks/{resource_id}", None),
            ("read", "GET", f"/v1/networks/{resource_id}/attachments", None),
            ("operate", "POST", f"/v1/networks/{resource_id}/attachments",
             {"node_id": acme_node}),
            ("operate", "DELETE", f"/v1/networks/{resource_id}/attachments/{acme_node}", None),
            ("delete", "DELETE", f"/v1/networks/{resource_id}", None),
        ],
        "cluster": [
            ("read", "GET", f"/v1/clusters/{resource_id}", None),
            ("update", "PATCH", f"/v1/clusters/{resource_id}", {"node_count": 1}),
            ("delete", "DELETE", f"/v1/clusters/{resource_id}", None),
        ],
        "node": [
            ("read", "GET", f"/v1/nodes/{resource_id}", None),
            ("power", "POST", f"/v1/nodes/{resource_id}/reboot", None),
            ("operate", "POST", f"/v1/nodes/{resource_id}/release", None),
            ("operate", "POST", f"/v1/nodes/{resource_id}/commission", None),
            ("operate", "PUT", f"/v1/nodes/{resource_id}/maintenance", {"reason": "matrix"}),
            ("operate", "DELETE", f"/v1/nodes/{resource_id}/maintenance", None),
        ],
    }[kind]  # fmt: skip


def targets(kind: str) -> tuple[str, ...]:
    return (
        ("acme", "globex", "free", "missing") if kind == "node" else ("acme", "globex", "missing")
    )


def answer(reply: httpx.Response) -> tuple[int, str, str]:
    body = reply.json() if reply.content else {}
    return reply.status_code, body.get("type", ""), body.get("title", "")


@pytest.mark.parametrize("kind", ["tenant", "ssh-key", "network", "cluster", "node"])
async def test_every_role_gets_the_promised_answer(world: World, kind: str) -> None:
    wrong: list[str] = []
    for who in PRINCIPALS:
        hidden_answers: dict[tuple[str, str], tuple[int, str, str]] = {}
        async with world.api(who) as api:
            for target in targets(kind):
                resource_id = (
                    MISSING.get(kind, str(uuid.uuid4()))
                    if target == "missing" else world.ids[kind, target]
                )  # fmt: skip
                for action, method, path, body in calls(kind, resource_id, world):
                    reply = await api.request(method, path, json=body)
                    promised = expect(who, kind, target, action)
                    got = reply.status_code
                    refused = got == 403 or answer(reply)[1].endswith(":not-found")
                    if (promised == "ok" and refused) or (promised != "ok" and got != promised):
                        wrong.append(f"{who} {method} {path} ({target}): {got}, not {promised}")
                    if target != "acme" and promised == 404:
                        hidden_answers.setdefault((method, path.split("/")[2]), answer(reply))
                        if hidden_answers[method, path.split("/")[2]] != answer(reply):
                            wrong.append(f"{who} {method} {path}: hidden != missing")
    assert not wrong, "\n".join(wrong)


async def test_a_member_deletes_only_keys_it_owns_and_admins_any(world: World) -> None:
    """Deleting is the one action here that cannot be repeated: each try on a fresh key."""
    for who, promised in (("owner", 204), ("tenant-admin", 204), ("platform-admin", 204),
                          ("other-member", 404), ("viewer", 403), ("platform-viewer", 403),
                          ("operator", 403)):  # fmt: skip
        async with world.api("owner") as api:
            key = await created(
                await api.post("/v1/ssh-keys", json={"name": who, "public_key": ssh_key(who)})
            )
        async with world.api(who) as api:
            reply = await api.delete(f"/v1/ssh-keys/{key['id']}")
        assert reply.status_code == promised, (who, reply.text)
    async with world.api("tenant-admin") as api:
        missing = await api.delete(f"/v1/ssh-keys/{uuid.uuid4()}")
        theirs = await api.delete(f"/v1/ssh-keys/{world.ids['ssh-key', 'globex']}")
    assert answer(missing) == answer(theirs) and missing.status_code == 404


async def test_ids_in_bodies_follow_the_same_rule(world: World) -> None:
    """A cluster's network and an attachment's node are authorized as acting on them directly:
    another member's or tenant's answers exactly like a missing one."""
    cluster = {"name": "c2", "kind": "slurm", "node_count": 1, "gpu_model": GPU, "image": "lab-sim"}
    async with world.api("other-member") as api:
        answers = {
            answer(await api.post("/v1/clusters", json={**cluster, "network": network_id}))
            for network_id in (
                world.ids["network", "acme"], world.ids["network", "globex"], str(uuid.uuid4())
            )
        }  # fmt: skip
    assert len(answers) == 1 and next(iter(answers))[0] == 404, answers
    async with world.api("owner") as api:
        attach = f"/v1/networks/{world.ids['network', 'acme']}/attachments"
        answers = {
            answer(await api.post(attach, json={"node_id": node_id}))
            for node_id in (world.ids["node", "globex"], world.ids["node", "free"], "lab-999")
        }
        assert len(answers) == 1 and next(iter(answers))[0] == 404, answers
        own = await api.post(attach, json={"node_id": world.ids["node", "acme"]})
        assert own.status_code not in (403, 404), own.text  # authorized (409: not ready)


async def stream(world: World, who: str) -> set[tuple[str, str]]:
    """(kind, resource id) of every event the caller's stream replays from the start."""
    url = world.platform.api_url.replace("http://", "ws://") + "/v1/events?after=0"
    headers = {"Authorization": f"Bearer {world.tokens[who]}"}
    seen: set[tuple[str, str]] = set()
    async with websockets.connect(url, additional_headers=headers) as socket:
        while True:
            try:
                event = json.loads(await asyncio.wait_for(socket.recv(), 2))
            except TimeoutError:
                return seen
            seen.add((event["kind"], event["resource_id"]))


@pytest.mark.parametrize("who", list(PRINCIPALS))
async def test_each_event_stream_shows_exactly_what_get_shows(world: World, who: str) -> None:
    seen = await stream(world, who)
    for kind in ("tenant", "network", "cluster"):
        for target in ("acme", "globex"):
            visible = expect(who, kind, target, "read") == "ok"
            assert ((kind, world.ids[kind, target]) in seen) is visible, (who, kind, target)
    nodes = {f"lab-00{i}" for i in range(1, 5)}
    node_events = {resource for kind, resource in seen if kind == "node"}
    # Nodes were enrolled free (the platform's): only platform principals saw those events.
    assert node_events == (nodes if who in PLATFORM_ROLES else set()), (who, node_events)
