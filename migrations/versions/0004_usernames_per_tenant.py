"""Usernames are unique per tenant, not across the installation.

A global constraint told one tenant's admin which names the other tenants use (creating one answered
409) and let a tenant take names from all of them. Sign-in names the tenant (`name@tenant`).

Downgrading fails while two tenants hold the same name: rename one first.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot drop a constraint in place, so the table is copied.
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_username", type_="unique")
        batch.create_unique_constraint("uq_users_tenant_username", ["tenant_id", "username"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_tenant_username", type_="unique")
        batch.create_unique_constraint("uq_users_username", ["username"])
