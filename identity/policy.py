"""The one authorization policy: roles plus attributes, deny by default.

`decide` first finds the rule for (resource kind, action): the roles that may act. Then the
attribute rules, in order:
  1. a tenant-scoped resource belongs to one tenant: only a principal of that tenant acts on
     it (platform admins excepted), and to anyone else it is `hidden` (the API answers 404);
  2. operators act on hardware, not on tenant data;
  3. a tenant member acts only on what it owns; a tenant admin on all of its tenant's.
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
    ("image", Action.READ): EVERYONE,
    ("audit", Action.READ): frozenset({ADMIN}),
    ("event", Action.READ): EVERYONE,  # the stream; each event then by its resource's rule
    ("tenant", Action.READ): frozenset({ADMIN, T_ADMIN, MEMBER, VIEWER}),
    ("tenant", Action.CREATE): frozenset({ADMIN}),
    ("tenant", Action.UPDATE): frozenset({ADMIN}),
    ("tenant", Action.DELETE): frozenset({ADMIN}),
}

# Kinds whose records belong to a tenant (operators never act on them); a tenant belongs to
# itself.
TENANT_SCOPED: frozenset[str] = frozenset({"tenant"})


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


def _roles(principal: Principal) -> frozenset[Role]:
    return frozenset(Role(r) for r in principal.roles if r in Role._value2member_map_)


def decide(principal: Principal, action: Action, resource: Resource) -> Decision:
    roles = _roles(principal)
    allowed_roles = RULES.get((resource.kind, action))
    if allowed_roles is None:
        return Decision(False, f"no rule allows {action} on {resource.kind}")
    granted = roles & allowed_roles
    if not granted:
        wanted = ", ".join(sorted(allowed_roles))
        return Decision(False, f"{action} on {resource.kind} needs one of: {wanted}")
    if resource.kind in TENANT_SCOPED and ADMIN not in granted:
        if resource.tenant is not None and principal.tenant != resource.tenant:
            return Decision(False, "resource of another tenant", hidden=True)
        if granted <= {OPS}:
            return Decision(False, "operators act on hardware, not on tenant data")
        if (
            resource.owner is not None
            and T_ADMIN not in granted
            and resource.owner != principal.subject
        ):
            return Decision(False, "members act only on what they own")
    return Decision(True, f"granted by role {sorted(granted)[0]}")
