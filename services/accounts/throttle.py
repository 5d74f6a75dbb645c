"""Sign-in throttling per user name and per client address, with exponential backoff.

Each failed sign-in counts against the user name and against the client address. Once a count
reaches its limit (``Settings.login_max_failures_per_user`` / ``..._per_address``) the name or
address is locked for ``login_lockout_seconds``; every further failure doubles the lockout, up
to ``login_lockout_max_seconds``. While locked, :func:`check_login_allowed` raises
:class:`~services.errors.TooManyAttempts` before any password is checked, so a locked name
answers the same, and as fast, whether it exists or not. A successful sign-in clears the
name's count but not the address's: one valid account must not reset an address that is
guessing at other accounts' passwords.

The counts live in the ``loginthrottle`` table, so several web processes share them, and each
failure is one atomic upsert, so concurrent failures are all counted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time

from sqlalchemy import and_, case, delete, select, update
from sqlmodel import Session

from core.config import Settings, get_settings
from core.names import fold_username
from db.models import LoginThrottle
from services.errors import TooManyAttempts


def _now() -> float:
    """Unix time; tests replace it to step past a lockout."""
    return time.time()


def _key(scope: str, subject: str) -> str:
    return f"{scope}:{hashlib.sha256(subject.encode('utf-8')).hexdigest()}"


def _address_subject(address: str) -> str:
    """An IPv6 client counts by its /64, since one host usually holds a whole /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _name_key(username: str) -> str:
    """A user name counts folded (``core.names.fold_username``), as sign-ins look it up:
    else ``ANA``, ``Ana`` and ``ana`` would each get their own failures against one account."""
    return _key("user", fold_username(username))


def _keys(username: str, address: str | None, settings: Settings) -> list[tuple[str, int]]:
    keys = [(_name_key(username), settings.login_max_failures_per_user)]
    if address:
        keys.append(
            (_key("address", _address_subject(address)), settings.login_max_failures_per_address)
        )
    return keys


def check_login_allowed(session: Session, *, username: str, address: str | None) -> None:
    """Raise :class:`TooManyAttempts` when ``username`` or ``address`` is locked out."""
    now = _now()
    keys = [k for k, _ in _keys(username, address, get_settings())]
    table = LoginThrottle.__table__
    until = session.execute(select(table.c.locked_until).where(table.c.key.in_(keys))).scalars()
    latest = max(until, default=0.0)
    if latest > now:
        raise TooManyAttempts(retry_after=max(1, math.ceil(latest - now)))


def record_login_failure(session: Session, *, username: str, address: str | None) -> None:
    """Count one failed sign-in against the name and the address; lock them past the limit.

    Writes in ``session``; the caller commits (before answering 401, or the count is lost).
    """
    settings = get_settings()
    now = _now()
    window = settings.login_failure_window_seconds
    base = settings.login_lockout_seconds
    cap = max(settings.login_lockout_max_seconds, base)
    table = LoginThrottle.__table__
    for key, limit in _keys(username, address, settings):
        _count_failure(session, key, now, now - window)
        failures = session.execute(select(table.c.failures).where(table.c.key == key)).scalar_one()
        if failures >= limit:
            wait = min(base * 2.0 ** min(failures - limit, 64), cap)
            session.execute(update(table).where(table.c.key == key).values(locked_until=now + wait))
    # Forget rows no one has failed on for a while, so guessed names do not pile up.
    session.execute(
        delete(table).where(
            and_(table.c.last_failure_at < now - window - cap, table.c.locked_until < now - window)
        )
    )


def record_login_success(session: Session, *, username: str) -> None:
    """Clear the name's count after a successful sign-in (the address's count stays)."""
    table = LoginThrottle.__table__
    session.execute(delete(table).where(table.c.key == _name_key(username)))


def clear_user(session: Session, *, username: str) -> None:
    """Unlock a user name at once (after an admin sets a new password)."""
    record_login_success(session, username=username)


def _count_failure(session: Session, key: str, now: float, stale: float) -> None:
    """Add one failure to ``key`` atomically; a count idle since ``stale`` starts again at 1."""
    table = LoginThrottle.__table__
    restart = and_(table.c.last_failure_at < stale, table.c.locked_until < stale)
    failures = case((restart, 1), else_=table.c.failures + 1)
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(table).values(key=key, failures=1, last_failure_at=now, locked_until=0.0)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={"failures": failures, "last_failure_at": now},
            )
        )
        return
    # Other databases: read-modify-write, which may miss a count under a race.
    row = session.get(LoginThrottle, key)
    if row is None:
        session.add(LoginThrottle(key=key, failures=1, last_failure_at=now))
    else:
        restarted = row.last_failure_at < stale and row.locked_until < stale
        row.failures = 1 if restarted else row.failures + 1
        row.last_failure_at = now
        session.add(row)
    session.flush()
