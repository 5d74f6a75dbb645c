"""overlap annotation sets, gold photos and quality checks

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 04:10:00

``project.quality`` holds a lead's quality settings; ``image.gold`` and
``image.overlap_target`` mark gold and overlap photos (every existing photo starts as an
ordinary one); ``annotationset`` keeps each annotator's own set of an overlap or gold photo
and the frozen gold labels; ``photoagreement`` the agreement of an overlap photo.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quality", sa.JSON(), nullable=True))
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("gold", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("overlap_target", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_index(batch_op.f("ix_image_gold"), ["gold"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_image_overlap_target"), ["overlap_target"], unique=False
        )

    op.create_table(
        "annotationset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"]),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_id", "user_id", "kind", name="uq_annotationset_image_user_kind"),
    )
    with op.batch_alter_table("annotationset", schema=None) as batch_op:
        for col in ("image_id", "project_id", "user_id", "kind", "submitted_at"):
            batch_op.create_index(batch_op.f(f"ix_annotationset_{col}"), [col], unique=False)

    op.create_table(
        "photoagreement",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("f1", sa.Float(), nullable=False),
        sa.Column("mean_iou", sa.Float(), nullable=True),
        sa.Column("label_disagreements", sa.Integer(), nullable=False),
        sa.Column("annotators", sa.JSON(), nullable=True),
        sa.Column("per_class", sa.JSON(), nullable=True),
        sa.Column("pairs", sa.JSON(), nullable=True),
        sa.Column("computed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"]),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"]),
        sa.PrimaryKeyConstraint("image_id"),
    )
    with op.batch_alter_table("photoagreement", schema=None) as batch_op:
        for col in ("project_id", "computed_at"):
            batch_op.create_index(batch_op.f(f"ix_photoagreement_{col}"), [col], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("photoagreement", schema=None) as batch_op:
        for col in ("project_id", "computed_at"):
            batch_op.drop_index(batch_op.f(f"ix_photoagreement_{col}"))
    op.drop_table("photoagreement")
    with op.batch_alter_table("annotationset", schema=None) as batch_op:
        for col in ("image_id", "project_id", "user_id", "kind", "submitted_at"):
            batch_op.drop_index(batch_op.f(f"ix_annotationset_{col}"))
    op.drop_table("annotationset")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_overlap_target"))
        batch_op.drop_index(batch_op.f("ix_image_gold"))
        batch_op.drop_column("overlap_target")
        batch_op.drop_column("gold")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("quality")
