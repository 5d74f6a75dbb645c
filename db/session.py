"""The engine, sessions, and schema migrations applied on start.

SQLite (the default) runs in WAL mode with foreign keys on and a busy timeout, so the web
process and a worker process can share one file; within a process, writers queue on a lock
(``db.sqlite_writes``). The ``database_url`` setting
selects PostgreSQL instead.

The data dir is created readable by its owner only (0700), and the SQLite file too (0600;
SQLite gives its ``-wal`` and ``-shm`` files the same mode): they hold password hashes and
every annotation. An existing dir or file with looser modes is left alone, with a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from core.config import Settings, get_settings
from db.sqlite_writes import gate_for
from db.sqlite_writes import install as install_write_gate

#: How long a write waits for another connection's to end (SQLite's busy timeout, and the
#: process's own write queue: ``db.sqlite_writes``).
SQLITE_BUSY_TIMEOUT_S = 30.0
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_engine: Engine | None = None
log = logging.getLogger(__name__)


def _warn_if_shared(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "%s can be read by other users of this machine (mode %o); it holds password "
            "hashes: run `chmod go-rwx %s`",
            path,
            mode,
            path,
        )


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (parents as usual) readable by its owner only, unless it exists."""
    if path.is_dir():
        _warn_if_shared(path)
        return
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)  # mkdir's mode passes through the umask


def _ensure_private_sqlite_file(url: str) -> None:
    """Create the SQLite file empty with mode 0600 before SQLite creates it with 0644."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        _warn_if_shared(path)
        return
    except FileNotFoundError:  # no parent dir: SQLite will say so when it connects
        return
    os.close(fd)
    os.chmod(path, 0o600)


def prepare_data_dir(settings: Settings | None = None) -> None:
    """The data dir (0700) and, for SQLite, the database file (0600)."""
    settings = settings or get_settings()
    ensure_private_dir(settings.data_dir)
    if settings.is_sqlite:
        _ensure_private_sqlite_file(settings.db_url)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cur.close()


def _json_dumps(obj: object) -> str:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def make_engine(url: str, **options: Any) -> Engine:
    # orjson: geometry columns dominate export and import time, and it is ~5x faster.
    json_args = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads, **options}
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            **json_args,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        database = make_url(url).database
        if database and database != ":memory:":
            install_write_gate(engine, gate_for(os.path.abspath(database), SQLITE_BUSY_TIMEOUT_S))
    else:
        engine = create_engine(url, pool_pre_ping=True, **json_args)
    return engine


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        settings = get_settings()
        if settings.is_sqlite:
            prepare_data_dir(settings)
        _engine = make_engine(settings.db_url)
    return _engine


def reset_engine() -> None:
    """Drop the cached engines (after ``core.config.configure`` points elsewhere)."""
    global _engine, _side_engine
    for engine in (_engine, _side_engine):
        if engine is not None:
            engine.dispose()
    _engine = _side_engine = None


_side_engine: Engine | None = None


@contextmanager
def _committing(session: Session) -> Iterator[Session]:
    """``session``, committed when the block succeeds, rolled back when it raises, then closed."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def side_session_scope() -> Iterator[Session]:
    """:func:`session_scope` on a connection of its own, outside the pool: for work a request
    does after its commit while it still holds its pooled connection (the auto-training
    checks). Taking a second pooled connection there deadlocks once every pooled connection
    belongs to a request waiting for its second one (20 annotators saving at once)."""
    global _side_engine
    if _side_engine is None:
        get_engine()  # prepares the data dir
        _side_engine = make_engine(get_settings().db_url, poolclass=NullPool)
    with _committing(Session(_side_engine, expire_on_commit=False)) as session:
        yield session


def init_db() -> None:
    """Create the data dir and bring the schema to the newest migration."""
    from alembic import command
    from alembic.config import Config

    settings = get_settings()
    if not settings.is_sqlite:  # for SQLite, get_engine prepares the dir and the file
        ensure_private_dir(settings.data_dir)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", settings.db_url.replace("%", "%%"))
    engine = get_engine()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    with _committing(Session(get_engine(), expire_on_commit=False)) as session:
        yield session


def get_session() -> Iterator[Session]:
    """A request's session, for ``api.deps.db_session``, which declares it with
    ``scope="function"`` so that the commit runs before the response is sent."""
    with session_scope() as session:
        yield session
