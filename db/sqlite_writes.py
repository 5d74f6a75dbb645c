"""One writer at a time, queued in the process, for each SQLite file.

SQLite lets one connection write at a time. When a second connection of this process wants
to write, SQLite's busy handler makes it sleep and retry (1, 2, 5 ... 100 ms), so under
ten annotators saving at once a save could wait hundreds of milliseconds after the file was
free again: the save p95 of ``bench/bench_leases.py`` was 0.6-1.4 s. Here the connections of
one process to one file queue on a lock instead, taken at their transaction's first write
and released as soon as its COMMIT or ROLLBACK has run, so the next writer starts at once.

Other processes (the job worker) still meet SQLite's busy handler, as before. A connection
that waits longer than the busy timeout gets SQLite's own "database is locked" error, as it
would have from SQLite.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

#: The statements that make pysqlite open a write transaction (or that write outside one).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


class WriteGate:
    """The lock for one SQLite file, and which DBAPI connections hold it."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._holder: int | None = None  # id() of the DBAPI connection holding it

    def enter(self, dbapi_connection: Any) -> None:
        """Take the lock for ``dbapi_connection`` unless it holds it already."""
        key = id(_raw(dbapi_connection))
        if self._holder == key:
            return
        if not self._lock.acquire(timeout=self.timeout_s):
            raise sqlite3.OperationalError("database is locked")
        self._holder = key

    def leave(self, dbapi_connection: Any) -> None:
        """Release the lock if ``dbapi_connection`` holds it (after its transaction ended)."""
        if self._holder is not None and self._holder == id(_raw(dbapi_connection)):
            self._holder = None
            self._lock.release()


def _raw(connection: Any) -> Any:
    """The sqlite3 connection behind a pool's proxy (the dialect gets either)."""
    return getattr(connection, "dbapi_connection", connection)


_gates: dict[str, WriteGate] = {}
_gates_lock = threading.Lock()


def gate_for(database: str, timeout_s: float) -> WriteGate:
    """The process's gate of the SQLite file ``database`` (shared by every engine on it)."""
    with _gates_lock:
        return _gates.setdefault(database, WriteGate(timeout_s))


def install(engine: Engine, gate: WriteGate) -> None:
    """Make ``engine``'s connections queue on ``gate`` before they write."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before_write(conn, _cursor, statement: str, _params, _context, _many) -> None:
        if statement.lstrip()[:7].upper().startswith(_WRITES):
            gate.enter(conn.connection)

    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    # After the DBAPI call, not at SQLAlchemy's commit event (which runs before it): the
    # next writer must find the file free. The pool's reset-on-return rolls back through
    # do_rollback too, so a connection returned mid-transaction releases the lock as well.
    def do_commit(dbapi_connection) -> None:
        try:
            commit(dbapi_connection)
        finally:
            gate.leave(dbapi_connection)

    def do_rollback(dbapi_connection) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            gate.leave(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    @event.listens_for(engine, "close")
    def _closed(dbapi_connection, _record) -> None:  # closing ends its transaction
        gate.leave(dbapi_connection)

    @event.listens_for(engine, "invalidate")
    def _invalidated(dbapi_connection, _record, _exception) -> None:
        gate.leave(dbapi_connection)
