"""the assistance back end each project chose on the dashboard

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00

``project.assistance`` holds the choice (``services.training.assist.set_assistance``). Existing projects
get none, which means ``auto``: the behaviour they have had until now.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assistance", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("assistance")
