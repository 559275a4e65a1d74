"""The authorization policy, decision by decision."""

from __future__ import annotations

import pytest

from identity import policy
from identity.oidc import Principal
from identity.policy import Action, Resource, decide


def who(*roles: str, tenant: str | None = None, subject: str = "u1") -> Principal:
    return Principal(subject=subject, roles=frozenset(roles), tenant=tenant)


@pytest.mark.parametrize(
    ("roles", "kind", "action", "allowed"),
    [
        (("operator",), "node", Action.OPERATE, True),
        (("platform-admin",), "node", Action.CREATE, True),
        (("viewer",), "node", Action.READ, True),
        (("viewer",), "node", Action.OPERATE, False),
        (("tenant-admin",), "node", Action.READ, False),
        (("tenant-member",), "image", Action.READ, True),
        (("operator",), "audit", Action.READ, False),
        (("platform-admin",), "audit", Action.READ, True),
        (("platform-admin",), "node", Action.DELETE, False),  # no rule: denied
        (("root",), "image", Action.READ, False),  # unknown roles grant nothing
        ((), "image", Action.READ, False),
    ],
)
def test_roles(roles: tuple[str, ...], kind: str, action: Action, allowed: bool) -> None:
    decision = decide(who(*roles), action, Resource(kind))
    assert decision.allowed is allowed, decision.reason
    assert not decision.hidden


@pytest.fixture
def tenant_kind(monkeypatch: pytest.MonkeyPatch) -> str:
    """A tenant-scoped kind ("volume") as later issues add them."""
    everyone = frozenset(policy.Role)
    monkeypatch.setitem(policy.RULES, ("volume", Action.UPDATE), everyone)
    monkeypatch.setattr(policy, "TENANT_SCOPED", frozenset({"volume"}))
    return "volume"


def test_another_tenants_resource_is_hidden(tenant_kind: str) -> None:
    theirs = Resource(tenant_kind, "v1", tenant="globex", owner="bob")
    decision = decide(who("tenant-admin", tenant="acme"), Action.UPDATE, theirs)
    assert (decision.allowed, decision.hidden) == (False, True)
    no_tenant = decide(who("tenant-admin"), Action.UPDATE, theirs)
    assert no_tenant.hidden


def test_members_act_on_their_own_and_admins_on_the_tenants(tenant_kind: str) -> None:
    bobs = Resource(tenant_kind, "v1", tenant="acme", owner="bob")
    assert decide(who("tenant-member", tenant="acme", subject="bob"), Action.UPDATE, bobs).allowed
    alice = who("tenant-member", tenant="acme", subject="alice")
    assert not decide(alice, Action.UPDATE, bobs).allowed
    assert decide(who("tenant-admin", tenant="acme"), Action.UPDATE, bobs).allowed


def test_operators_do_not_touch_tenant_data_but_platform_admins_may(tenant_kind: str) -> None:
    acmes = Resource(tenant_kind, "v1", tenant="acme")
    assert not decide(who("operator", tenant="acme"), Action.UPDATE, acmes).allowed
    assert decide(who("platform-admin"), Action.UPDATE, acmes).allowed


def test_viewers_read_their_whole_tenant_and_change_nothing() -> None:
    bobs = Resource("ssh-key", "k1", tenant="acme", owner="bob")
    viewer = who("viewer", tenant="acme")
    assert decide(viewer, Action.READ, bobs).allowed
    assert not decide(viewer, Action.DELETE, bobs).allowed
    assert not decide(who("tenant-member", tenant="acme"), Action.READ, bobs).allowed


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
