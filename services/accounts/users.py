"""Users, roles and bearer tokens.

Passwords are hashed with stdlib ``hashlib.scrypt`` at OWASP's cost (N=2^17, r=8, p=1) and a
random salt; a hash made with a lower cost is replaced at the user's next successful sign-in.
User names are stored folded (``core.names``: NFKC, case-folded) and looked up folded, and
a new name that would pass for an existing one on screen (another case, a look-alike letter,
an invisible character) is refused; names and passwords have length limits (settings).
Bearer tokens are random strings of which only the sha256 is stored (``db.models.ApiToken``);
a new password, or disabling the user, revokes them all. Sign-ins are throttled per user name
and per client address (``services.accounts.throttle``). There is no default user or password: the
first admin is created with ``panelbeater user add NAME --role admin``.

Which projects a user may work in is ``services.accounts.projects``' rule (admins: all; others: the
projects they are a member of); the functions here change a user's memberships by name.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shlex
import threading
from collections.abc import Sequence
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, func, select

from core.config import env_name, get_settings
from core.names import fold_username, is_invisible, username_skeleton
from db.models import ApiToken, Project, Role, User, utcnow
from services.accounts import projects as project_service
from services.accounts import throttle
from services.errors import NotFound

#: scrypt cost, OWASP's minimum: 128 MiB of memory and 0.3-1 s of one core per hash. Stored
#: with each hash, so a weaker stored hash is recognised and upgraded at the next sign-in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
#: Tests only, by monkeypatching: a lower N so that suites creating many users stay fast.
#: Nothing reads it from settings or the environment, so a deployment cannot go below 2^17.
_scrypt_n_for_tests: int | None = None
#: Hashes at once per process: each holds 128 MiB, and a burst of sign-ins on the web
#: server's 40 worker threads would otherwise ask for 5 GiB. More than the cores buys nothing.
_HASH_SLOTS = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))
MIN_PASSWORD_LENGTH = 8


class Permission(str, Enum):
    """Something a role may do. The values are the names ``/api/login`` and ``/api/me`` send
    and the workspace reads, so they never change; a misspelt member is an AttributeError
    where a bare string would have been a silent refusal."""

    view = "view"
    annotate = "annotate"
    assist = "assist"
    review = "review"
    fraud = "fraud"
    dashboard = "dashboard"
    export = "export"
    retrain = "retrain"
    import_ = "import"  # ``import`` is a Python keyword
    users = "users"

    def __str__(self) -> str:
        return self.value


#: What every role may do: look, draw, and be assisted while drawing.
_EVERY_ROLE = frozenset({Permission.view, Permission.annotate, Permission.assist})
#: What a lead may do: everything but managing users, which is the admin's alone.
_LEAD_PERMISSIONS = frozenset(Permission) - {Permission.users}

#: What each role may do. The UI hides, and the API refuses, everything else.
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.annotator: _EVERY_ROLE,
    Role.reviewer: _EVERY_ROLE | {Permission.review},
    Role.fraud_analyst: _EVERY_ROLE | {Permission.fraud},
    Role.lead: _LEAD_PERMISSIONS,
    Role.admin: _LEAD_PERMISSIONS | {Permission.users},
}

FIRST_START_MESSAGE = (
    "No users exist yet. Create the first admin with:\n"
    "    panelbeater user add NAME --role admin\n"
    "(it prompts for the password; there is no default password)."
)


def first_start_message(data_dir: Path) -> str:
    """:data:`FIRST_START_MESSAGE` for a server started on ``data_dir``: the command it prints
    names that data dir, so it creates the admin where this server looks for users."""
    where = shlex.quote(str(Path(data_dir).resolve()))
    return FIRST_START_MESSAGE.replace(
        "panelbeater user add", f"panelbeater --data-dir {where} user add"
    )


#: The roles whose work is watching the project: they land on the dashboard on sign-in, and
#: their workspace asks the queue for a photo (a lease) only when they open it.
DASHBOARD_ROLES = frozenset({Role.lead, Role.admin})


def lands_on_dashboard(role: Role | str) -> bool:
    return Role(role) in DASHBOARD_ROLES


class UserError(ValueError):
    """A user could not be created or changed; the message says why."""


class UnknownUser(UserError, NotFound):
    """There is no user of that name."""


def permissions(role: Role | str) -> frozenset[Permission]:
    return PERMISSIONS[Role(role)]


def can(user_or_role: User | Role | str, permission: Permission) -> bool:
    """Whether the user's (or the role's) role may do ``permission``; a name that is no
    :class:`Permission` raises ValueError rather than answering False."""
    role = user_or_role.role if isinstance(user_or_role, User) else user_or_role
    return Permission(permission) in permissions(role)


def _cost() -> tuple[int, int, int]:
    return (_scrypt_n_for_tests or SCRYPT_N, SCRYPT_R, SCRYPT_P)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses more than 32 MiB unless told: allow exactly what these parameters need.
    maxmem = 128 * r * (n + p + 2) + 1024
    with _HASH_SLOTS:
        return hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem
        )


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt_hex$hash_hex`` of ``password`` with a fresh 16-byte salt."""
    n, r, p = _cost()
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p, 32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def _parse(stored: str) -> tuple[int, int, int, bytes, str] | None:
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
        if scheme != "scrypt":
            return None
        return int(n), int(r), int(p), bytes.fromhex(salt_hex), hash_hex
    except ValueError:
        return None


def verify_password(password: str, stored: str) -> bool:
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, hash_hex = parsed
    try:
        digest = _scrypt(password, salt, n, r, p, len(hash_hex) // 2)
    except ValueError:  # parameters scrypt refuses
        return False
    return hmac.compare_digest(digest.hex(), hash_hex)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with less than today's scrypt cost (or is unreadable)."""
    parsed = _parse(stored)
    if parsed is None:
        return True
    n, r, p, _, _ = parsed
    cur_n, cur_r, cur_p = _cost()
    return n < cur_n or r < cur_r or p < cur_p


def count_users(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(User)).one())


def list_users(session: Session) -> list[User]:
    """Every account, by user name."""
    return list(session.exec(select(User).order_by(User.username)).all())


def get_user(session: Session, username: str) -> User | None:
    """The user of that name, compared folded (``core.names.fold_username``): ``Ana`` finds
    ``ana``. Two accounts from before names were folded (``Bob`` and ``bob``) answer only to
    their exact names, since a folded one could be either."""
    same = session.exec(select(User).where(User.username_key == fold_username(username))).all()
    if len(same) == 1:
        return same[0]
    return next((u for u in same if u.username == username.strip()), None)


def _look_alike(session: Session, username: str) -> str | None:
    """An existing user name that passes for ``username`` on screen (the same skeleton:
    ``core.names.username_skeleton``), else None. Every name is compared, since a stored
    skeleton would go stale whenever the table of look-alike letters grows."""
    skeleton = username_skeleton(username)
    names = session.exec(select(User.username)).all()
    return next((n for n in names if username_skeleton(n) == skeleton), None)


def _checked_username(session: Session, username: str) -> str:
    """``username`` folded, as it is stored; UserError for an empty, long, spaced or invisible
    name, and for one that differs from an existing name only by letter case, a look-alike
    letter or an invisible character (``u_аdmin`` with a Cyrillic а next to ``u_admin``)."""
    _check_length("user name", username, get_settings().max_username_chars, "max_username_chars")
    name = fold_username(username)  # after the check: NFKC makes some characters 18 long
    _check_length("user name", name, get_settings().max_username_chars, "max_username_chars")
    if not name:
        raise UserError("The user name is empty; give the account a name.")
    twin = _look_alike(session, name)
    if twin is not None and fold_username(twin) == name:
        raise UserError(f"A user named {twin!r} already exists.")
    if twin is not None:
        raise UserError(
            f"The user name {username!r} looks like the existing user {twin!r}: names that "
            "differ only by letter case, a look-alike letter or an invisible character are "
            "refused. Choose another name."
        )
    if any(c.isspace() or is_invisible(c) for c in name):
        raise UserError("The user name must contain no spaces and no invisible characters.")
    return name


def _check_password(password: str) -> None:
    """UserError for a password shorter than 8 or longer than ``max_password_chars``."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    _check_length("password", password, get_settings().max_password_chars, "max_password_chars")


def _check_length(what: str, value: str, limit: int, setting: str) -> None:
    if len(value) > limit:
        raise UserError(
            f"The {what} has {len(value)} characters; at most {limit} are allowed "
            f"(setting {env_name(setting)})."
        )


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role | str,
    projects: Sequence[str] | None = None,
) -> User:
    """Add a user, stored under its folded name (``Ana`` becomes ``ana``), a member of
    ``projects`` (None: the project this server serves; admins may work in every project
    anyway). Raises :class:`UserError` for a name that is taken, looks like a taken one, is
    too long or holds spaces; an unknown role; a password too short or too long; or an
    unknown project. Nothing is written then."""
    username = _checked_username(session, username)
    try:
        role = Role(role)
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise UserError(f"Unknown role {role!r}; use one of: {valid}.") from None
    _check_password(password)
    names = [get_settings().project_name] if projects is None else list(projects)
    joined = _projects(session, names)
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    for project in joined:
        project_service.add_member(session, user, project)
    return user


def _projects(session: Session, names: Sequence[str]) -> list[Project]:
    try:
        return [project_service.find_project(session, n) for n in dict.fromkeys(names)]
    except NotFound as e:
        raise UserError(str(e)) from None


def get_user_or_fail(session: Session, username: str) -> User:
    """The user of that name; UnknownUser (a NotFound) when there is none."""
    return _existing(session, username)


def _existing(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise UnknownUser(f"No user named {username!r}; `panelbeater user list` shows them all.")
    return user


def set_password(session: Session, *, username: str, password: str) -> User:
    """Give ``username`` a new password, revoke every token it holds, and lift any lockout."""
    user = _existing(session, username)
    _check_password(password)
    user.password_hash = hash_password(password)
    session.add(user)
    revoke_user_tokens(session, user)
    throttle.clear_user(session, username=user.username)
    session.flush()
    return user


def disable_user(session: Session, *, username: str) -> User:
    """Disable ``username`` and revoke its tokens at once: it can neither sign in nor use a
    token until :func:`enable_user`."""
    user = _existing(session, username)
    user.active = False
    session.add(user)
    revoke_user_tokens(session, user)
    session.flush()
    return user


def enable_user(session: Session, *, username: str) -> User:
    """Let a disabled user sign in again (its old tokens stay revoked)."""
    user = _existing(session, username)
    user.active = True
    session.add(user)
    session.flush()
    return user


def user_projects(session: Session, *, username: str) -> list[str]:
    """The projects ``username`` is a member of, by name (admins may work in all of them)."""
    return project_service.member_project_names(session, _existing(session, username))


def users_with_projects(session: Session) -> list[dict[str, Any]]:
    """Every account by name: ``{"username", "role", "active", "projects"}``, where
    ``projects`` names the projects it is a member of (admins may work in all of them)."""
    return [
        {
            "username": u.username,
            "role": u.role.value,
            "active": u.active,
            "projects": project_service.member_project_names(session, u),
        }
        for u in list_users(session)
    ]


def project_access(session: Session, *, username: str) -> dict[str, Any]:
    """``{"username", "projects", "all_projects"}``: the projects ``username`` is a member
    of, and whether it may work in every project (admins)."""
    user = _existing(session, username)
    return {
        "username": user.username,
        "projects": project_service.member_project_names(session, user),
        "all_projects": user.role == Role.admin,
    }


def join_projects(session: Session, *, username: str, projects: Sequence[str]) -> list[str]:
    """Make ``username`` a member of ``projects`` too; returns all its projects' names."""
    user = _existing(session, username)
    for project in _projects(session, projects):
        project_service.add_member(session, user, project)
    return project_service.member_project_names(session, user)


def leave_projects(session: Session, *, username: str, projects: Sequence[str]) -> list[str]:
    """End ``username``'s membership of ``projects``; returns the projects' names it keeps."""
    user = _existing(session, username)
    for project in _projects(session, projects):
        project_service.remove_member(session, user, project)
    return project_service.member_project_names(session, user)


def set_user_projects(session: Session, *, username: str, projects: Sequence[str]) -> list[str]:
    """Make ``username`` a member of exactly ``projects``; returns their names."""
    user = _existing(session, username)
    try:
        return project_service.set_member_projects(session, user, projects)
    except NotFound as e:
        raise UserError(str(e)) from None


def authenticate(
    session: Session, username: str, password: str, *, address: str | None = None
) -> User | None:
    """The active user with this name and password, else None (same answer for either mistake).

    Throttled per user name and per client ``address`` (``services.accounts.throttle``): raises
    :class:`services.errors.TooManyAttempts` (with ``retry_after`` seconds) while either is
    locked out, before the password is checked. A failure is committed at once, since the
    caller's 401 would otherwise roll it back. A hash weaker than today's cost is replaced on
    success (the caller commits that with the token it issues).
    """
    throttle.check_login_allowed(session, username=username, address=address)
    user = get_user(session, username)
    if user is None or not user.active:
        # Hash anyway so a wrong name takes as long as a wrong password.
        verify_password(password, _dummy_hash())
        ok = False
    else:
        ok = verify_password(password, user.password_hash)
    if not ok or user is None:
        throttle.record_login_failure(session, username=username, address=address)
        session.commit()
        return None
    throttle.record_login_success(session, username=username)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.add(user)
    return user


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, user: User, *, ttl_hours: float | None = None) -> str:
    """A new bearer token for ``user``; only its sha256 is stored."""
    ttl = get_settings().token_ttl_hours if ttl_hours is None else ttl_hours
    token = secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            token_sha256=_token_digest(token),
            user_id=user.id,
            expires_at=utcnow() + timedelta(hours=ttl),
        )
    )
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The active user a non-expired token belongs to, else None."""
    if not token:
        return None
    # One query: every request of every signed-in user asks this first.
    return session.exec(
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(
            ApiToken.token_sha256 == _token_digest(token),
            ApiToken.expires_at >= utcnow(),
            User.active == True,  # noqa: E712
        )
    ).first()


def revoke_user_tokens(session: Session, user: User) -> int:
    """Delete every token of ``user``; the number deleted."""
    result = session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    return int(result.rowcount or 0)


def revoke_token(session: Session, token: str) -> int | None:
    """Delete ``token``; the id of the user it belonged to, or None when it was unknown.
    Signing out also gives the user's photos back: ``services.labelling.leases.sign_out``."""
    row = session.exec(
        select(ApiToken).where(ApiToken.token_sha256 == _token_digest(token))
    ).first()
    if row is None:
        return None
    session.delete(row)
    return row.user_id


def _dummy_hash() -> str:
    """A hash of today's cost that matches no password, for names that do not exist."""
    n, r, p = _cost()
    return f"scrypt${n}${r}${p}${'00' * 16}${'00' * 32}"
