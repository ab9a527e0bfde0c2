"""The prompt registry: prompts, their immutable versions, labels pointing at versions, approvals.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prompts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "tenant_id", sa.String(64), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_prompts_tenant_name"),
    )
    op.create_index("ix_prompts_tenant_id", "prompts", ["tenant_id"])
    op.create_table(
        "prompt_versions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "prompt_id", sa.String(64), sa.ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("template", sa.JSON, nullable=False),
        sa.Column("variables", sa.JSON, nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("prompt_id", "number", name="uq_prompt_versions_number"),
    )
    op.create_index("ix_prompt_versions_prompt_id", "prompt_versions", ["prompt_id"])
    op.create_table(
        "prompt_labels",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "prompt_id", sa.String(64), sa.ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column(
            "version_id",
            sa.String(64),
            sa.ForeignKey("prompt_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("moved_by", sa.String(256), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("prompt_id", "name", name="uq_prompt_labels_name"),
    )
    op.create_index("ix_prompt_labels_prompt_id", "prompt_labels", ["prompt_id"])
    op.create_table(
        "prompt_approvals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "version_id",
            sa.String(64),
            sa.ForeignKey("prompt_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("approver", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("version_id", "approver", name="uq_prompt_approvals"),
    )
    op.create_index("ix_prompt_approvals_version_id", "prompt_approvals", ["version_id"])


def downgrade() -> None:
    op.drop_index("ix_prompt_approvals_version_id", "prompt_approvals")
    op.drop_table("prompt_approvals")
    op.drop_index("ix_prompt_labels_prompt_id", "prompt_labels")
    op.drop_table("prompt_labels")
    op.drop_index("ix_prompt_versions_prompt_id", "prompt_versions")
    op.drop_table("prompt_versions")
    op.drop_index("ix_prompts_tenant_id", "prompts")
    op.drop_table("prompts")
