"""recent classes per user

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00

``user.recent_classes`` keeps the classes a user picked last, so that the workspace's keys 1-9
follow the user from browser to browser; existing users start with none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recent_classes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("recent_classes")
