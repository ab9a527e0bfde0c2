"""Access control: permissions and role grants live in code; the database stores only bindings.

A binding gives a user a role tenant-wide (team None) or in one team. `allows` and `require` are the
one choke point; `scope_for` turns an actor's bindings into the `Scope` every analytics query takes,
so an analyst of team A never sees team B's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    DASHBOARDS_READ = "dashboards:read"
    TRANSCRIPTS_READ = "transcripts:read"
    POLICIES_READ = "policies:read"
    KEYS_READ = "keys:read"
    KEYS_MANAGE = "keys:manage"
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"
    TEAMS_READ = "teams:read"
    TEAMS_MANAGE = "teams:manage"
    ROLES_MANAGE = "roles:manage"
    AUDIT_READ = "audit:read"
    EXPORTS_CREATE = "exports:create"
    DATA_ERASE = "data:erase"
    LIMITS_READ = "limits:read"  # limits and budgets, with spend
    LIMITS_MANAGE = "limits:manage"
    PROMPTS_READ = "prompts:read"
    PROMPTS_MANAGE = "prompts:manage"  # create versions, move labels, approve
    FEEDBACK_WRITE = "feedback:write"  # score requests as a reviewer (API keys score their own tenant's)


ROLE_GRANTS: Mapping[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "auditor": frozenset(
        {
            Permission.DASHBOARDS_READ,
            Permission.TRANSCRIPTS_READ,
            Permission.POLICIES_READ,
            Permission.KEYS_READ,
            Permission.USERS_READ,
            Permission.TEAMS_READ,
            Permission.AUDIT_READ,
            Permission.EXPORTS_CREATE,
            Permission.LIMITS_READ,
            Permission.PROMPTS_READ,
            # Auditors already read transcripts: rating what they read is the reviewer's job.
            Permission.FEEDBACK_WRITE,
        }
    ),
    "analyst": frozenset(
        {
            Permission.DASHBOARDS_READ,
            Permission.POLICIES_READ,
            Permission.KEYS_READ,
            Permission.TEAMS_READ,
            Permission.EXPORTS_CREATE,
            Permission.LIMITS_READ,
            Permission.PROMPTS_READ,
        }
    ),
    "viewer": frozenset({Permission.DASHBOARDS_READ}),
}
ROLES = tuple(ROLE_GRANTS)
# Permissions that only make sense tenant-wide: a team binding never grants them.
TENANT_ONLY = frozenset(
    {
        Permission.USERS_READ,
        Permission.USERS_MANAGE,
        Permission.TEAMS_MANAGE,
        Permission.AUDIT_READ,
        # Prompts belong to the tenant, shared by its teams: a team's role cannot change them for all.
        Permission.PROMPTS_READ,
        Permission.PROMPTS_MANAGE,
    }
)


class AccessDenied(Exception):
    """The actor lacks a permission; the message names it and is safe to show."""

    def __init__(self, permission: Permission, team: str | None) -> None:
        where = f" in team {team!r}" if team else " tenant-wide"
        super().__init__(f"permission {permission.value!r} is required{where}")
        self.permission = permission
        self.team = team


@dataclass(frozen=True, slots=True)
class Binding:
    role: str
    team: str | None = None  # None: every team of the tenant


@dataclass(frozen=True, slots=True)
class Actor:
    """A person (or the admin token) acting through the admin API, pages or CLI."""

    user_id: str
    username: str
    tenant: str
    bindings: tuple[Binding, ...]
    via: str = "session"  # "session" | "token" | "cli"


@dataclass(frozen=True, slots=True)
class Scope:
    """The rows an actor may see: one tenant, and every team (None) or some teams."""

    tenant: str
    teams: frozenset[str] | None

    def covers(self, team: str) -> bool:
        return self.teams is None or team in self.teams


def permissions_of(role: str) -> frozenset[Permission]:
    return ROLE_GRANTS.get(role, frozenset())


def allows(actor: Actor | None, permission: Permission, team: str | None = None) -> bool:
    """True if `actor` holds `permission` tenant-wide, or in `team` when one is named."""
    if actor is None:
        return False
    for binding in actor.bindings:
        if permission not in permissions_of(binding.role):
            continue
        if binding.team is None:
            return True
        if team is not None and binding.team == team and permission not in TENANT_ONLY:
            return True
    return False


def require(actor: Actor | None, permission: Permission, team: str | None = None) -> None:
    if not allows(actor, permission, team):
        raise AccessDenied(permission, team)


def scope_for(actor: Actor, permission: Permission) -> Scope | None:
    """The teams in which `actor` holds `permission`; None if in none at all."""
    teams: set[str] = set()
    for binding in actor.bindings:
        if permission in permissions_of(binding.role):
            if binding.team is None:
                return Scope(actor.tenant, None)
            if permission not in TENANT_ONLY:
                teams.add(binding.team)
    return Scope(actor.tenant, frozenset(teams)) if teams else None


def held_anywhere(actor: Actor | None, permission: Permission) -> bool:
    return actor is not None and scope_for(actor, permission) is not None


def can_grant(actor: Actor, role: str, team: str | None) -> bool:
    """Granting needs `roles:manage` where the grant applies and every permission of the role there:
    nobody can hand out more than they hold."""
    if role not in ROLE_GRANTS or not allows(actor, Permission.ROLES_MANAGE, team):
        return False
    return all(allows(actor, permission, team) for permission in _grantable(role, team))


def _grantable(role: str, team: str | None) -> Iterable[Permission]:
    grants = permissions_of(role)
    return grants if team is None else grants - TENANT_ONLY
