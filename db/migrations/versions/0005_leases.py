"""photo leases for queue hand-out

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 04:10:00

``image.lease_user_id`` / ``lease_since`` / ``lease_until`` record who the queue handed a
photo to and until when (``services.labelling.leases``). Every existing photo starts without a lease.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("lease_since", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_image_lease_user_id"), ["lease_user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_lease_user_id"))
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_since")
        batch_op.drop_column("lease_user_id")
