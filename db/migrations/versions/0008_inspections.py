"""vehicles, inspections, photo slots and new-damage flags

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 04:10:00

New tables only; existing photos get no inspection slot and keep working as before.
``inspectionphoto`` is keyed by the image, so a photo holds at most one slot.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vehicle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("plate", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("vin", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("make", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("vehicle_model", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("notes", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "plate", name="uq_vehicle_project_plate"),
        sa.UniqueConstraint("project_id", "vin", name="uq_vehicle_project_vin"),
    )
    op.create_index(op.f("ix_vehicle_plate"), "vehicle", ["plate"], unique=False)
    op.create_index(op.f("ix_vehicle_project_id"), "vehicle", ["project_id"], unique=False)
    op.create_index(op.f("ix_vehicle_vin"), "vehicle", ["vin"], unique=False)
    op.create_table(
        "inspection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("inspected_on", sa.Date(), nullable=True),
        sa.Column("claim_number", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("notes", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
        ),
        sa.ForeignKeyConstraint(
            ["vehicle_id"],
            ["vehicle.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("vehicle_id", "name", name="uq_inspection_vehicle_name"),
    )
    op.create_index(
        op.f("ix_inspection_claim_number"), "inspection", ["claim_number"], unique=False
    )
    op.create_index(op.f("ix_inspection_kind"), "inspection", ["kind"], unique=False)
    op.create_index(op.f("ix_inspection_project_id"), "inspection", ["project_id"], unique=False)
    op.create_index(op.f("ix_inspection_vehicle_id"), "inspection", ["vehicle_id"], unique=False)
    op.create_table(
        "damageflag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("compared_inspection_id", sa.Integer(), nullable=True),
        sa.Column("compared_image_id", sa.Integer(), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("best_iou", sa.Float(), nullable=True),
        sa.Column("alignment", sa.JSON(), nullable=True),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("computed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["compared_image_id"],
            ["image.id"],
        ),
        sa.ForeignKeyConstraint(
            ["compared_inspection_id"],
            ["inspection.id"],
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image.id"],
        ),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspection.id"],
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_id", "source", "source_id", name="uq_damageflag_instance"),
    )
    op.create_index(op.f("ix_damageflag_image_id"), "damageflag", ["image_id"], unique=False)
    op.create_index(
        op.f("ix_damageflag_inspection_id"), "damageflag", ["inspection_id"], unique=False
    )
    op.create_index(op.f("ix_damageflag_project_id"), "damageflag", ["project_id"], unique=False)
    op.create_index(op.f("ix_damageflag_state"), "damageflag", ["state"], unique=False)
    op.create_table(
        "inspectionphoto",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("slot", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["image.id"],
        ),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspection.id"],
        ),
        sa.PrimaryKeyConstraint("image_id"),
        sa.UniqueConstraint("inspection_id", "slot", name="uq_inspectionphoto_slot"),
    )
    op.create_index(
        op.f("ix_inspectionphoto_inspection_id"), "inspectionphoto", ["inspection_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_inspectionphoto_inspection_id"), table_name="inspectionphoto")
    op.drop_table("inspectionphoto")
    op.drop_index(op.f("ix_damageflag_state"), table_name="damageflag")
    op.drop_index(op.f("ix_damageflag_project_id"), table_name="damageflag")
    op.drop_index(op.f("ix_damageflag_inspection_id"), table_name="damageflag")
    op.drop_index(op.f("ix_damageflag_image_id"), table_name="damageflag")
    op.drop_table("damageflag")
    op.drop_index(op.f("ix_inspection_vehicle_id"), table_name="inspection")
    op.drop_index(op.f("ix_inspection_project_id"), table_name="inspection")
    op.drop_index(op.f("ix_inspection_kind"), table_name="inspection")
    op.drop_index(op.f("ix_inspection_claim_number"), table_name="inspection")
    op.drop_table("inspection")
    op.drop_index(op.f("ix_vehicle_vin"), table_name="vehicle")
    op.drop_index(op.f("ix_vehicle_project_id"), table_name="vehicle")
    op.drop_index(op.f("ix_vehicle_plate"), table_name="vehicle")
    op.drop_table("vehicle")
