"""The one authorization policy: roles plus attributes, deny by default.

`decide` checks, in order:
  1. a tenant-scoped resource belongs to one tenant: to anyone but that tenant's principals
     and platform admins it is `hidden` (the API answers 404 whatever the action and roles),
     so its existence does not leak;
  2. the rule for (resource kind, action): the roles that may act;
  3. operators act on hardware, not on tenant data;
  4. a tenant member acts only on what it owns; a tenant admin on all of its tenant's;
  5. a principal whose tenant is suspended (or gone) may only read.
Anything without a rule is denied.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from identity.oidc import Principal


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    OPERATOR = "operator"
    TENANT_ADMIN = "tenant-admin"
    TENANT_MEMBER = "tenant-member"
    VIEWER = "viewer"


class Action(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    OPERATE = "operate"  # provision, release: lifecycle operations


ADMIN, OPS, T_ADMIN, MEMBER, VIEWER = (
    Role.PLATFORM_ADMIN,
    Role.OPERATOR,
    Role.TENANT_ADMIN,
    Role.TENANT_MEMBER,
    Role.VIEWER,
)
EVERYONE = frozenset(Role)

# (resource kind, action) -> the roles that may take it. One screen, on purpose.
RULES: dict[tuple[str, Action], frozenset[Role]] = {
    ("node", Action.READ): frozenset({ADMIN, OPS, VIEWER}),
    ("node", Action.CREATE): frozenset({ADMIN, OPS}),
    ("node", Action.OPERATE): frozenset({ADMIN, OPS}),
    ("switch", Action.READ): frozenset({ADMIN, OPS, VIEWER}),
    ("switch", Action.CREATE): frozenset({ADMIN, OPS}),
    ("switch", Action.UPDATE): frozenset({ADMIN, OPS}),
    ("switch", Action.DELETE): frozenset({ADMIN, OPS}),
    ("fabric", Action.READ): frozenset({ADMIN, OPS, VIEWER}),
    ("fabric", Action.UPDATE): frozenset({ADMIN, OPS}),  # cabling, provisioning network
    ("network", Action.READ): frozenset({ADMIN, T_ADMIN, MEMBER, VIEWER}),
    ("network", Action.CREATE): frozenset({T_ADMIN, MEMBER}),
    ("network", Action.DELETE): frozenset({ADMIN, T_ADMIN, MEMBER}),
    ("network", Action.OPERATE): frozenset({ADMIN, T_ADMIN, MEMBER}),  # attach, detach nodes
    ("cluster", Action.READ): frozenset({ADMIN, T_ADMIN, MEMBER, VIEWER}),
    ("cluster", Action.CREATE): frozenset({T_ADMIN, MEMBER}),
    ("cluster", Action.UPDATE): frozenset({T_ADMIN, MEMBER}),  # scale
    ("cluster", Action.DELETE): frozenset({ADMIN, T_ADMIN, MEMBER}),
    ("image", Action.READ): EVERYONE,
    ("audit", Action.READ): frozenset({ADMIN}),
    ("event", Action.READ): EVERYONE,  # the stream; each event then by its resource's rule
    ("ssh-key", Action.READ): frozenset({ADMIN, T_ADMIN, MEMBER, VIEWER}),
    ("ssh-key", Action.CREATE): frozenset({T_ADMIN, MEMBER}),
    ("ssh-key", Action.UPDATE): frozenset({T_ADMIN, MEMBER}),
    ("ssh-key", Action.DELETE): frozenset({ADMIN, T_ADMIN, MEMBER}),
    ("tenant", Action.READ): frozenset({ADMIN, T_ADMIN, MEMBER, VIEWER}),
    ("tenant", Action.CREATE): frozenset({ADMIN}),
    ("tenant", Action.UPDATE): frozenset({ADMIN}),
    ("tenant", Action.DELETE): frozenset({ADMIN}),
}

# Kinds whose records belong to a tenant (operators never act on them); a tenant belongs to
# itself.
TENANT_SCOPED: frozenset[str] = frozenset({"tenant", "ssh-key", "network", "cluster"})


@dataclass(frozen=True)
class Resource:
    kind: str
    id: str | None = None
    tenant: str | None = None
    owner: str | None = None  # subject that created it


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    hidden: bool = False  # deny as "not found": the resource's existence must not leak
    problem: str = "forbidden"  # the API's problem type when denied


def _roles(principal: Principal) -> frozenset[Role]:
    return frozenset(Role(r) for r in principal.roles if r in Role._value2member_map_)


def decide(
    principal: Principal, action: Action, resource: Resource, *, tenant_active: bool = True
) -> Decision:
    """`tenant_active`: whether the principal's tenant exists and is not suspended."""
    roles = _roles(principal)
    if (
        resource.kind in TENANT_SCOPED
        and resource.tenant is not None
        and principal.tenant != resource.tenant
        and ADMIN not in roles
    ):  # first: whatever the roles, another tenant's resource must not be seen to exist
        return Decision(False, "resource of another tenant", hidden=True)
    allowed_roles = RULES.get((resource.kind, action))
    if allowed_roles is None:
        return Decision(False, f"no rule allows {action} on {resource.kind}")
    granted = roles & allowed_roles
    if not granted:
        wanted = ", ".join(sorted(allowed_roles))
        return Decision(False, f"{action} on {resource.kind} needs one of: {wanted}")
    if resource.kind in TENANT_SCOPED and ADMIN not in granted:
        if granted <= {OPS}:
            return Decision(False, "operators act on hardware, not on tenant data")
        if (
            resource.owner is not None
            and granted.isdisjoint({T_ADMIN, VIEWER})  # viewers read the whole tenant
            and resource.owner != principal.subject
        ):
            return Decision(False, "members act only on what they own")
    if principal.tenant is not None and not tenant_active and action != Action.READ:
        return Decision(
            False,
            f"tenant {principal.tenant!r} is suspended: read only",
            problem="tenant-suspended",
        )
    return Decision(True, f"granted by role {sorted(granted)[0]}")
