"""user names fold: user.username_key

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 10:00:00

``user.username_key`` is the user name NFKC-normalised and case-folded, what a sign-in looks a
name up by, so that ``Lead1`` signs in as ``lead1`` too. Existing names keep their spelling,
since authors' and reviewers' columns hold them as written; only the key is filled. Two old
accounts that fold alike (``Bob`` and ``bob``) share a key and stay apart by the exact name.
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _fold(name: str) -> str:
    """``core.names.fold_username`` as of this revision (a migration keeps its own copy)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold()).strip()


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN and CREATE INDEX: on SQLite a batch operation would
    # rebuild ``user`` (copy, drop, rename), and the drop fails while other tables' foreign
    # keys point at it. The empty server default stays on SQLite (changing it means that
    # rebuild); the ORM fills the key on every write.
    op.add_column(
        "user",
        sa.Column(
            "username_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""
        ),
    )
    user = sa.table("user", sa.column("id", sa.Integer), sa.column("username", sa.String))
    key = sa.table("user", sa.column("id", sa.Integer), sa.column("username_key", sa.String))
    connection = op.get_bind()
    for row in connection.execute(sa.select(user.c.id, user.c.username)).all():
        connection.execute(
            key.update().where(key.c.id == row.id).values(username_key=_fold(row.username))
        )
    if connection.dialect.name != "sqlite":
        op.alter_column("user", "username_key", server_default=None)
    op.create_index("ix_user_username_key", "user", ["username_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_username_key"))
        batch_op.drop_column("username_key")
