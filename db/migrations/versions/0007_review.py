"""per-instance review and rejections returned to their author

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 04:10:00

``annotation.review_state`` / ``review_reason`` / ``reviewed_by``: a reviewer's verdict on one
instance. ``image.rejected_for``: the author a rejected photo waits for, whose queue shows it
first. ``reviewdecision``: every verdict, for the per-annotator rejection rates. Existing
annotations start unreviewed; an existing rejected photo gets no author (nobody was recorded),
so it stays in the shared queue as before.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("review_state", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("review_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("reviewed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rejected_for", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_image_rejected_for"), ["rejected_for"], unique=False)
    op.create_table(
        "reviewdecision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("annotation_id", sa.Integer(), nullable=True),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("reviewer", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["annotation_id"], ["annotation.id"]),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"]),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reviewdecision", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviewdecision_author"), ["author"], unique=False)
        batch_op.create_index(batch_op.f("ix_reviewdecision_image_id"), ["image_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_reviewdecision_project_id"), ["project_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("reviewdecision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviewdecision_project_id"))
        batch_op.drop_index(batch_op.f("ix_reviewdecision_image_id"))
        batch_op.drop_index(batch_op.f("ix_reviewdecision_author"))
    op.drop_table("reviewdecision")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_rejected_for"))
        batch_op.drop_column("rejected_for")
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.drop_column("reviewed_by")
        batch_op.drop_column("review_reason")
        batch_op.drop_column("review_state")
