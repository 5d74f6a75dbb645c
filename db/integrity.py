"""What a database constraint refused, read from an ``IntegrityError`` of SQLite or PostgreSQL,
so that an answer can name the table, the columns and the constraint without quoting the SQL
or the values (``services.errors.Conflict.from_integrity`` turns it into a sentence)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

import db.models  # noqa: F401  (declares the tables whose constraints are looked up)

#: What the constraint guards: ``unique``, ``not_null``, ``foreign_key``, ``check`` or ``other``.
KINDS = ("unique", "not_null", "foreign_key", "check", "other")


@dataclass(frozen=True)
class Violation:
    """One refused constraint. ``table``, ``columns`` and ``constraint`` are '' / () when the
    driver's message does not say them (SQLite never names a constraint; the table's
    metadata fills it in where the columns pin it down)."""

    kind: str
    table: str = ""
    columns: tuple[str, ...] = ()
    constraint: str = ""


def _names(text: str) -> tuple[str, ...]:
    return tuple(c.strip().strip('"') for c in text.split(",") if c.strip())


def _sqlite(message: str) -> Violation | None:
    """SQLite: ``UNIQUE constraint failed: vehicle.project_id, vehicle.plate``."""
    m = re.search(r"(UNIQUE|NOT NULL|CHECK|FOREIGN KEY) constraint failed(?::\s*(.+))?", message)
    if m is None:
        return None
    kind = {"UNIQUE": "unique", "NOT NULL": "not_null", "CHECK": "check"}.get(
        m.group(1), "foreign_key"
    )
    what = (m.group(2) or "").splitlines()[0].strip() if m.group(2) else ""
    if kind == "check":  # the constraint's name (or its expression), not columns
        return Violation(kind, constraint=what)
    qualified = [c.split(".", 1) for c in _names(what) if "." in c]
    table = qualified[0][0] if qualified else ""
    return Violation(kind, table=table, columns=tuple(c for _, c in qualified))


def _postgres(message: str) -> Violation | None:
    """PostgreSQL: ``duplicate key value violates unique constraint "uq_..."`` with a
    ``DETAIL: Key (project_id, plate)=(...)`` line, and its siblings."""
    m = re.search(
        r'violates (unique|foreign key|check|not-null) constraint(?: "([^"]+)")?', message
    )
    if m is None:
        return None
    kind = {"unique": "unique", "foreign key": "foreign_key", "check": "check"}.get(
        m.group(1), "not_null"
    )
    table = re.search(r'(?:relation|on table) "([^"]+)"', message)
    column = re.search(r'null value in column "([^"]+)"', message)
    key = re.search(r"Key \(([^)]*)\)=", message)
    columns = (column.group(1),) if column else _names(key.group(1)) if key else ()
    return Violation(
        kind, table=table.group(1) if table else "", columns=columns, constraint=m.group(2) or ""
    )


def _with_metadata(v: Violation) -> Violation:
    """``v`` completed from the tables' declared constraints: the unique constraint's name for
    its columns (SQLite), or its table and columns for its name (PostgreSQL, a bare message)."""
    for table in SQLModel.metadata.tables.values():
        if v.table and table.name != v.table:
            continue
        # ``Field(unique=True, index=True)`` declares a unique index, not a constraint
        unique_indexes = [i for i in table.indexes if i.unique]
        for c in [*table.constraints, *unique_indexes]:
            cols = tuple(col.name for col in c.columns)
            if (v.constraint and c.name == v.constraint) or (
                not v.constraint and v.kind == "unique" and cols == v.columns
            ):
                return Violation(v.kind, table.name, v.columns or cols, str(c.name or ""))
    return v


def violation(error: IntegrityError) -> Violation:
    """What ``error`` refused; ``Violation("other")`` when its message is not one of the
    known shapes. Only the driver's own message is read (``error.orig``), never the SQL."""
    message = str(error.orig)
    found = _sqlite(message) or _postgres(message)
    return _with_metadata(found) if found else Violation("other")
