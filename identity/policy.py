"""The one authorization policy: roles plus attributes, deny by default.

Roles say their scope. Platform roles (platform-admin, platform-viewer, operator) act across
tenants and count only in a token that names no tenant; tenant roles (tenant-admin,
tenant-member, viewer) count only in a token that names one. A principal with a tenant thus
sees only its tenant, whatever roles its token lists.

`decide` checks, in order:
  1. the caller's roles must be able to read the kind at all, else 403 whatever the id;
  2. a resource the caller may not see, or one that does not exist, is `hidden` (404): another
     tenant's, a free node to a tenant, another member's to a member. Missing and hidden get
     the same answer, so an id's existence does not leak;
  3. the rule for (kind, action): the roles that may act (403 otherwise);
  4. operators act on hardware, not on tenant data;
  5. a member acts only on what it owns; a tenant admin on all of its tenant's;
  6. a principal whose tenant is suspended (or gone) may only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from identity.oidc import Principal


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    PLATFORM_VIEWER = "platform-viewer"  # reads everything, across tenants
    OPERATOR = "operator"
    TENANT_ADMIN = "tenant-admin"
    TENANT_MEMBER = "tenant-member"
    VIEWER = "viewer"  # reads its tenant's


class Action(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    OPERATE = "operate"  # provision, release, reboot, maintenance; attach and detach nodes
    POWER = "power"  # reboot a node: its tenant's too (the rest of OPERATE is the platform's)
    CONSOLE = "console"  # a node's serial console: its tenant's too


ADMIN, P_VIEWER, OPS = Role.PLATFORM_ADMIN, Role.PLATFORM_VIEWER, Role.OPERATOR
T_ADMIN, MEMBER, VIEWER = Role.TENANT_ADMIN, Role.TENANT_MEMBER, Role.VIEWER
PLATFORM_ROLES = frozenset({ADMIN, P_VIEWER, OPS})
TENANT_ROLES = frozenset({T_ADMIN, MEMBER, VIEWER})
EVERYONE = frozenset(Role)
TENANT_READERS = frozenset({ADMIN, P_VIEWER, T_ADMIN, MEMBER, VIEWER})

# (resource kind, action) -> the roles that may take it. One screen, on purpose.
RULES: dict[tuple[str, Action], frozenset[Role]] = {
    ("node", Action.READ): frozenset({ADMIN, P_VIEWER, OPS, T_ADMIN, MEMBER, VIEWER}),
    ("node", Action.CREATE): frozenset({ADMIN, OPS}),
    ("node", Action.OPERATE): frozenset({ADMIN, OPS}),
    ("node", Action.POWER): frozenset({ADMIN, OPS, T_ADMIN, MEMBER}),  # tenants: nodes they hold
    ("node", Action.CONSOLE): frozenset({ADMIN, OPS, T_ADMIN, MEMBER}),  # tenants: nodes they hold
    ("power", Action.READ): frozenset({ADMIN, P_VIEWER, OPS}),  # power-sync events of nodes
    ("console-log", Action.READ): frozenset({ADMIN, OPS}),  # every tenant's output: operators
    ("discovered-node", Action.READ): frozenset({ADMIN, P_VIEWER, OPS}),
    ("discovered-node", Action.DELETE): frozenset({ADMIN, OPS}),
    ("switch", Action.READ): frozenset({ADMIN, P_VIEWER, OPS}),
    ("switch", Action.CREATE): frozenset({ADMIN, OPS}),
    ("switch", Action.UPDATE): frozenset({ADMIN, OPS}),
    ("switch", Action.DELETE): frozenset({ADMIN, OPS}),
    ("fabric", Action.READ): frozenset({ADMIN, P_VIEWER, OPS}),
    ("fabric", Action.UPDATE): frozenset({ADMIN, OPS}),  # cabling, provisioning network
    ("network", Action.READ): TENANT_READERS,
    ("network", Action.CREATE): frozenset({T_ADMIN, MEMBER}),
    ("network", Action.DELETE): frozenset({ADMIN, T_ADMIN, MEMBER}),
    ("network", Action.OPERATE): frozenset({ADMIN, T_ADMIN, MEMBER}),  # attach, detach nodes
    ("cluster", Action.READ): TENANT_READERS,
    ("cluster", Action.CREATE): frozenset({T_ADMIN, MEMBER}),
    ("cluster", Action.UPDATE): frozenset({T_ADMIN, MEMBER}),  # scale
    ("cluster", Action.DELETE): frozenset({ADMIN, T_ADMIN, MEMBER}),
    ("image", Action.READ): EVERYONE,
    ("audit", Action.READ): frozenset({ADMIN}),
    ("event", Action.READ): EVERYONE,  # the stream; each event then by its resource's rule
    ("ssh-key", Action.READ): TENANT_READERS,
    ("ssh-key", Action.CREATE): frozenset({T_ADMIN, MEMBER}),
    ("ssh-key", Action.UPDATE): frozenset({T_ADMIN, MEMBER}),
    ("ssh-key", Action.DELETE): frozenset({ADMIN, T_ADMIN, MEMBER}),
    ("tenant", Action.READ): TENANT_READERS,
    ("tenant", Action.CREATE): frozenset({ADMIN}),
    ("tenant", Action.UPDATE): frozenset({ADMIN}),
    ("tenant", Action.DELETE): frozenset({ADMIN}),
}

# Tenant data: operators never act on it; a tenant belongs to itself.
TENANT_DATA: frozenset[str] = frozenset({"tenant", "ssh-key", "network", "cluster"})
# Kinds whose records a tenant sees only when they are its own: its data, and the nodes it
# holds (a node no tenant holds is the platform's).
TENANT_SCOPED: frozenset[str] = TENANT_DATA | {"node"}


@dataclass(frozen=True)
class Resource:
    kind: str
    id: str | None = None  # None: the collection (listing, creating)
    tenant: str | None = None  # whose it is; for a node, the tenant holding it
    owner: str | None = None  # the subject that created it (a node's: its cluster's owner)
    exists: bool = True  # False: the id names nothing (answered exactly like a hidden one)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    hidden: bool = False  # deny as "not found": the resource's existence must not leak
    problem: str = "forbidden"  # the API's problem type when denied


def roles_of(principal: Principal) -> frozenset[Role]:
    """The roles that count: tenant roles with a tenant, platform roles without one."""
    named = frozenset(Role(r) for r in principal.roles if r in Role._value2member_map_)
    return named & (TENANT_ROLES if principal.tenant is not None else PLATFORM_ROLES)


def _visible(principal: Principal, readers: frozenset[Role], resource: Resource) -> bool:
    """Whether a caller that may read the kind (as `readers`) may see this record."""
    if resource.id is None or resource.kind not in TENANT_SCOPED or principal.tenant is None:
        return True  # a collection; a platform kind; platform principals see every tenant's
    if resource.tenant != principal.tenant:
        return False
    only_member = readers <= {MEMBER}  # tenant admins and viewers see the whole tenant
    return not (only_member and resource.owner is not None and resource.owner != principal.subject)


def decide(
    principal: Principal, action: Action, resource: Resource, *, tenant_active: bool = True
) -> Decision:
    """`tenant_active`: whether the principal's tenant exists and is not suspended."""
    roles = roles_of(principal)
    readers = roles & RULES.get((resource.kind, Action.READ), frozenset())
    if readers and not (resource.exists and _visible(principal, readers, resource)):
        reason = "no such resource" if not resource.exists else "not visible to the caller"
        return Decision(False, reason, hidden=True)
    allowed_roles = RULES.get((resource.kind, action))
    if allowed_roles is None:
        return Decision(False, f"no rule allows {action} on {resource.kind}")
    granted = roles & allowed_roles
    if not granted:
        wanted = ", ".join(sorted(allowed_roles))
        scope = "with a tenant" if principal.tenant is not None else "without a tenant"
        return Decision(False, f"{action} on {resource.kind} needs one of: {wanted} ({scope})")
    if resource.kind in TENANT_DATA and ADMIN not in granted:
        if granted <= {OPS} or (action != Action.READ and granted <= {OPS, P_VIEWER}):
            return Decision(False, "operators act on hardware, not on tenant data")
        if granted <= {MEMBER} and resource.owner not in (None, principal.subject):
            return Decision(False, "members act only on what they own")
    if principal.tenant is not None and not tenant_active and action != Action.READ:
        return Decision(
            False,
            f"tenant {principal.tenant!r} is suspended: read only",
            problem="tenant-suspended",
        )
    return Decision(True, f"granted by role {sorted(granted)[0]}")
