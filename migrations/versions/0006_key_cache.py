"""A per-key switch for the response cache: NULL follows the policy, true turns it on, false off.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("cache", sa.Boolean(), nullable=True))


def downgrade() -> None:
    # Batch mode: older SQLite cannot drop a column in place, so the table is copied.
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("cache")
