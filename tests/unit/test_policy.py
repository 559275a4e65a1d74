"""The authorization policy, decision by decision."""

from __future__ import annotations

import pytest

from identity import policy
from identity.oidc import Principal
from identity.policy import Action, Resource, decide


def who(*roles: str, tenant: str | None = None, subject: str = "u1") -> Principal:
    return Principal(subject=subject, roles=frozenset(roles), tenant=tenant)


@pytest.mark.parametrize(
    ("roles", "tenant", "kind", "action", "allowed"),
    [
        (("operator",), None, "node", Action.OPERATE, True),
        (("platform-admin",), None, "node", Action.CREATE, True),
        (("platform-viewer",), None, "node", Action.READ, True),
        (("platform-viewer",), None, "node", Action.OPERATE, False),
        (("platform-viewer",), None, "switch", Action.READ, True),
        (("viewer",), "acme", "node", Action.READ, True),  # the listing: its tenant's nodes
        (("viewer",), "acme", "switch", Action.READ, False),
        (("viewer",), None, "node", Action.READ, False),  # a tenant role needs a tenant
        (("tenant-admin",), "acme", "node", Action.OPERATE, False),
        (("tenant-member",), None, "image", Action.READ, False),
        (("tenant-member",), "acme", "image", Action.READ, True),
        (("operator",), "acme", "node", Action.OPERATE, False),  # platform roles: no tenant
        (("platform-admin",), "acme", "tenant", Action.CREATE, False),
        (("operator",), None, "audit", Action.READ, False),
        (("platform-viewer",), None, "audit", Action.READ, False),
        (("platform-admin",), None, "audit", Action.READ, True),
        (("platform-admin",), None, "node", Action.DELETE, False),  # no rule: denied
        (("root",), None, "image", Action.READ, False),  # unknown roles grant nothing
        ((), None, "image", Action.READ, False),
    ],
)
def test_roles_say_their_scope(
    roles: tuple[str, ...], tenant: str | None, kind: str, action: Action, allowed: bool
) -> None:
    decision = decide(who(*roles, tenant=tenant), action, Resource(kind))
    assert decision.allowed is allowed, decision.reason
    assert not decision.hidden


@pytest.fixture
def tenant_kind(monkeypatch: pytest.MonkeyPatch) -> str:
    """A kind of tenant data ("volume") as later issues add them."""
    readers = frozenset(policy.TENANT_READERS)
    monkeypatch.setitem(policy.RULES, ("volume", Action.READ), readers)
    writers = frozenset(policy.Role) - {policy.Role.VIEWER}  # operators too: refused anyway
    monkeypatch.setitem(policy.RULES, ("volume", Action.UPDATE), writers)
    monkeypatch.setattr(policy, "TENANT_DATA", frozenset({"volume"}))
    monkeypatch.setattr(policy, "TENANT_SCOPED", frozenset({"volume"}))
    return "volume"


def test_another_tenants_resource_is_hidden_like_a_missing_one(tenant_kind: str) -> None:
    theirs = Resource(tenant_kind, "v1", tenant="globex", owner="bob")
    missing = Resource(tenant_kind, "v2", exists=False)
    for action in (Action.READ, Action.UPDATE):
        for principal in (who("tenant-admin", tenant="acme"), who("viewer", tenant="acme")):
            for resource in (theirs, missing):
                decision = decide(principal, action, resource)
                assert (decision.allowed, decision.hidden) == (False, True), decision
    # Without a read rule for the kind at all, the answer is 403 whatever the id.
    no_read = decide(who("tenant-admin", tenant="acme"), Action.READ, Resource("switch", "s1"))
    assert not no_read.hidden
    assert decide(who("platform-admin"), Action.READ, missing).hidden


def test_members_see_and_act_on_their_own_and_admins_on_the_tenants(tenant_kind: str) -> None:
    bobs = Resource(tenant_kind, "v1", tenant="acme", owner="bob")
    assert decide(who("tenant-member", tenant="acme", subject="bob"), Action.UPDATE, bobs).allowed
    alice = who("tenant-member", tenant="acme", subject="alice")
    for action in (Action.READ, Action.UPDATE):  # another member's: as if it did not exist
        assert decide(alice, action, bobs).hidden
    assert decide(who("tenant-admin", tenant="acme"), Action.UPDATE, bobs).allowed
    # A member who is also a viewer sees it, and still may not change it.
    both = who("tenant-member", "viewer", tenant="acme", subject="alice")
    assert decide(both, Action.READ, bobs).allowed
    refused = decide(both, Action.UPDATE, bobs)
    assert (refused.allowed, refused.hidden) == (False, False)


def test_operators_do_not_touch_tenant_data_but_platform_admins_may(tenant_kind: str) -> None:
    acmes = Resource(tenant_kind, "v1", tenant="acme")
    assert not decide(who("operator"), Action.UPDATE, acmes).allowed
    assert not decide(who("platform-viewer"), Action.UPDATE, acmes).allowed
    assert decide(who("platform-viewer"), Action.READ, acmes).allowed
    assert decide(who("platform-admin"), Action.UPDATE, acmes).allowed


def test_tenants_see_only_the_nodes_they_hold() -> None:
    held = Resource("node", "n1", tenant="acme", owner="bob")
    free = Resource("node", "n2")
    viewer = who("viewer", tenant="acme")
    assert decide(viewer, Action.READ, held).allowed
    assert decide(viewer, Action.READ, free).hidden
    assert decide(who("viewer", tenant="globex"), Action.READ, held).hidden
    assert decide(who("tenant-member", tenant="acme", subject="alice"), Action.READ, held).hidden
    assert decide(who("tenant-member", tenant="acme", subject="bob"), Action.READ, held).allowed
    operate = decide(viewer, Action.OPERATE, held)
    assert (operate.allowed, operate.hidden) == (False, False)
    assert decide(who("operator"), Action.OPERATE, held).allowed
    assert decide(who("platform-viewer"), Action.READ, free).allowed


def test_tenants_reboot_the_nodes_they_hold_and_nothing_else() -> None:
    held = Resource("node", "n1", tenant="acme", owner="bob")
    assert decide(who("tenant-admin", tenant="acme"), Action.POWER, held).allowed
    assert decide(who("tenant-member", tenant="acme", subject="bob"), Action.POWER, held).allowed
    alice = decide(who("tenant-member", tenant="acme", subject="alice"), Action.POWER, held)
    assert alice.hidden  # another member's cluster: not hers to see
    viewer = decide(who("viewer", tenant="acme"), Action.POWER, held)
    assert (viewer.allowed, viewer.hidden) == (False, False)
    assert decide(who("tenant-admin", tenant="globex"), Action.POWER, held).hidden
    assert decide(who("tenant-admin", tenant="acme"), Action.POWER, Resource("node", "n2")).hidden
    assert not decide(who("tenant-admin", tenant="acme"), Action.OPERATE, held).allowed
    assert decide(who("operator"), Action.POWER, held).allowed


def test_viewers_read_their_whole_tenant_and_change_nothing() -> None:
    bobs = Resource("ssh-key", "k1", tenant="acme", owner="bob")
    viewer = who("viewer", tenant="acme")
    assert decide(viewer, Action.READ, bobs).allowed
    assert not decide(viewer, Action.DELETE, bobs).allowed
    assert decide(who("tenant-member", tenant="acme"), Action.READ, bobs).hidden


def test_a_suspended_tenant_reads_but_does_not_create_or_change() -> None:
    bob = who("tenant-member", tenant="acme", subject="bob")
    new_key = Resource("ssh-key", tenant="acme")
    bobs = Resource("ssh-key", "k1", tenant="acme", owner="bob")
    refused = decide(bob, Action.CREATE, new_key, tenant_active=False)
    assert (refused.allowed, refused.problem) == (False, "tenant-suspended")
    assert not decide(bob, Action.DELETE, bobs, tenant_active=False).allowed
    assert decide(bob, Action.READ, bobs, tenant_active=False).allowed
    assert decide(bob, Action.CREATE, new_key, tenant_active=True).allowed
    # Platform admins belong to no tenant: a tenant's suspension does not bind them.
    assert decide(who("platform-admin"), Action.DELETE, bobs, tenant_active=False).allowed
