"""Experiments: at most one running or promoted experiment per prompt or model of a tenant, enforced by
the database (a partial unique index), so two starts at the same moment cannot both pass the check.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ROUTING_STATES = "state IN ('running', 'promoted')"


def upgrade() -> None:
    op.create_index(
        "uq_experiments_routing_target",
        "experiments",
        ["tenant_id", "kind", "target"],
        unique=True,
        sqlite_where=sa.text(ROUTING_STATES),
        postgresql_where=sa.text(ROUTING_STATES),
    )


def downgrade() -> None:
    op.drop_index("uq_experiments_routing_target", "experiments")
