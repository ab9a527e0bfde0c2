"""Limits and budgets set through the admin API and CLI (config-file rules live in the config).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "traffic_rules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "tenant_id", sa.String(64), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("match", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False, server_default="*"),
        sa.Column("period", sa.String(16), nullable=False, server_default=""),
        sa.Column("rpm", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tpm", sa.Integer, nullable=False, server_default="0"),
        sa.Column("concurrent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("hard_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("soft_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "tenant_id", "kind", "scope", "match", "model", "period", name="uq_traffic_rules_target"
        ),
    )
    op.create_index("ix_traffic_rules_tenant_id", "traffic_rules", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_traffic_rules_tenant_id", "traffic_rules")
    op.drop_table("traffic_rules")
