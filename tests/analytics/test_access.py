"""The permission model: role grants, team scoping, tenant-only permissions, no escalation."""

from __future__ import annotations

import pytest

from analytics.access import (
    AccessDenied,
    Actor,
    Binding,
    Permission,
    Scope,
    allows,
    can_grant,
    require,
    scope_for,
)

P = Permission


def actor(*bindings: Binding) -> Actor:
    return Actor("u1", "someone", "default", bindings)


@pytest.mark.parametrize(
    ("bindings", "permission", "team", "expected"),
    [
        ((Binding("viewer"),), P.DASHBOARDS_READ, None, True),
        ((Binding("viewer"),), P.DASHBOARDS_READ, "a", True),
        ((Binding("viewer"),), P.KEYS_READ, None, False),
        ((Binding("analyst", "a"),), P.DASHBOARDS_READ, "a", True),
        ((Binding("analyst", "a"),), P.DASHBOARDS_READ, "b", False),
        ((Binding("analyst", "a"),), P.DASHBOARDS_READ, None, False),
        ((Binding("analyst"),), P.TRANSCRIPTS_READ, None, False),
        ((Binding("auditor"),), P.TRANSCRIPTS_READ, "a", True),
        ((Binding("auditor"),), P.KEYS_MANAGE, "a", False),
        ((Binding("admin", "a"),), P.KEYS_MANAGE, "a", True),
        ((Binding("admin", "a"),), P.KEYS_MANAGE, "b", False),
        # Tenant-only permissions are never granted through a team binding.
        ((Binding("admin", "a"),), P.USERS_MANAGE, "a", False),
        ((Binding("admin", "a"),), P.AUDIT_READ, "a", False),
        ((Binding("admin"),), P.USERS_MANAGE, None, True),
        ((), P.DASHBOARDS_READ, None, False),
        ((Binding("no-such-role"),), P.DASHBOARDS_READ, None, False),
    ],
)
def test_allows(
    bindings: tuple[Binding, ...], permission: Permission, team: str | None, expected: bool
) -> None:
    assert allows(actor(*bindings), permission, team) is expected


def test_require_raises_with_a_clear_message() -> None:
    with pytest.raises(AccessDenied, match="'keys:manage' is required in team 'b'"):
        require(actor(Binding("admin", "a")), P.KEYS_MANAGE, "b")
    assert not allows(None, P.DASHBOARDS_READ)


def test_scope_for_unions_team_bindings() -> None:
    both = actor(Binding("analyst", "a"), Binding("viewer", "b"))
    assert scope_for(both, P.DASHBOARDS_READ) == Scope("default", frozenset({"a", "b"}))
    assert scope_for(both, P.KEYS_READ) == Scope("default", frozenset({"a"}))
    assert scope_for(both, P.AUDIT_READ) is None
    assert scope_for(actor(Binding("viewer"), Binding("analyst", "a")), P.DASHBOARDS_READ) == Scope(
        "default", None
    )
    scope = Scope("default", frozenset({"a"}))
    assert scope.covers("a") and not scope.covers("b")


@pytest.mark.parametrize(
    ("bindings", "role", "team", "expected"),
    [
        ((Binding("admin"),), "admin", None, True),
        ((Binding("admin"),), "viewer", "a", True),
        ((Binding("admin", "a"),), "analyst", "a", True),
        ((Binding("admin", "a"),), "admin", "a", True),
        ((Binding("admin", "a"),), "admin", None, False),  # no climbing from team to tenant
        ((Binding("admin", "a"),), "viewer", "b", False),  # nor sideways into another team
        ((Binding("auditor"),), "viewer", None, False),  # auditors do not manage roles
        ((Binding("admin"),), "superuser", None, False),
    ],
)
def test_can_grant(bindings: tuple[Binding, ...], role: str, team: str | None, expected: bool) -> None:
    assert can_grant(actor(*bindings), role, team) is expected
