"""a prediction state for predictions whose model version is no longer offered

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00

``prediction.state`` gains ``withdrawn``: pending predictions of a version that was rolled
back, replaced, or found below its bar to pre-annotate leave the workspace and stay in the
database as history. Existing rows keep their state. On PostgreSQL the enum type gains the
value; on SQLite the column's declared length grows to hold it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD = ("pending", "accepted", "rejected", "edited")
NEW = (*OLD, "withdrawn")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # inside the migration's transaction (PostgreSQL 12+), as nothing here uses the value
        op.execute("ALTER TYPE predictionstate ADD VALUE IF NOT EXISTS 'withdrawn'")
        return
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        batch_op.alter_column(
            "state",
            existing_type=sa.Enum(*OLD, name="predictionstate"),
            type_=sa.Enum(*NEW, name="predictionstate"),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Withdrawn predictions become pending again; PostgreSQL cannot drop an enum value, so
    # the type keeps it unused there.
    op.execute("UPDATE prediction SET state = 'pending' WHERE state = 'withdrawn'")
    if op.get_bind().dialect.name == "postgresql":
        return
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        batch_op.alter_column(
            "state",
            existing_type=sa.Enum(*NEW, name="predictionstate"),
            type_=sa.Enum(*OLD, name="predictionstate"),
            existing_nullable=False,
        )
