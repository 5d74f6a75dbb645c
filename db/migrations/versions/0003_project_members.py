"""project members, and the project of each job

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00

A user who is not an admin may work only in the projects they are a member of. Until now
every user could work in every project, so that nobody loses access with the upgrade, every
existing non-admin user becomes a member of every existing project. Admins need no rows.

Jobs now carry their project. An existing job gets the database's project when there is
exactly one (what the server has always served); with several, which one a job ran on was
never recorded, so it stays empty and no project's job list shows it.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projectmember",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("project_id", "user_id"),
    )
    with op.batch_alter_table("projectmember", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_projectmember_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("project_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_job_project_id"), ["project_id"], unique=False)
        batch_op.create_foreign_key("fk_job_project_id_project", "project", ["project_id"], ["id"])

    bind = op.get_bind()
    # Everyone keeps what they had: each non-admin user joins each existing project.
    bind.execute(
        sa.text(
            "INSERT INTO projectmember (project_id, user_id, created_at) "
            'SELECT p.id, u.id, :now FROM project p CROSS JOIN "user" u '
            "WHERE u.role <> 'admin'"
        ).bindparams(sa.bindparam("now", type_=sqlmodel.sql.sqltypes.UTCDateTime())),
        {"now": datetime.now(timezone.utc)},
    )
    projects = bind.execute(sa.text("SELECT id FROM project")).scalars().all()
    if len(projects) == 1:
        bind.execute(
            sa.text("UPDATE job SET project_id = :p WHERE project_id IS NULL"), {"p": projects[0]}
        )


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_constraint("fk_job_project_id_project", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_job_project_id"))
        batch_op.drop_column("project_id")
    with op.batch_alter_table("projectmember", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_projectmember_user_id"))
    op.drop_table("projectmember")
