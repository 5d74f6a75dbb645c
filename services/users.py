"""Users, roles and bearer tokens.

Passwords are hashed with stdlib ``hashlib.scrypt`` and a random salt; bearer tokens are random
strings of which only the sha256 is stored (``db.models.ApiToken``). There is no default user or
password: the first admin is created with ``panelbeater user add NAME --role admin``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlmodel import Session, func, select

from core.config import get_settings
from db.models import ApiToken, Role, User, utcnow

#: scrypt cost: 16 MiB of memory, ~50 ms on one core; stored with the hash so it can change later.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 8

#: What a lead may do: everything but managing users, which is the admin's alone.
_LEAD_PERMISSIONS = frozenset(
    {"view", "annotate", "assist", "review", "fraud", "dashboard", "export", "retrain", "import"}
)

#: What each role may do. The UI hides, and the API refuses, everything else.
PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.annotator: frozenset({"view", "annotate", "assist"}),
    Role.reviewer: frozenset({"view", "annotate", "assist", "review"}),
    Role.fraud_analyst: frozenset({"view", "annotate", "assist", "fraud"}),
    Role.lead: _LEAD_PERMISSIONS,
    Role.admin: _LEAD_PERMISSIONS | {"users"},
}

FIRST_START_MESSAGE = (
    "No users exist yet. Create the first admin with:\n"
    "    panelbeater user add NAME --role admin\n"
    "(it prompts for the password; there is no default password)."
)


class UserError(ValueError):
    """A user could not be created or changed; the message says why."""


def permissions(role: Role | str) -> frozenset[str]:
    return PERMISSIONS[Role(role)]


def can(user_or_role: User | Role | str, permission: str) -> bool:
    role = user_or_role.role if isinstance(user_or_role, User) else user_or_role
    return permission in permissions(role)


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt_hex$hash_hex`` of ``password`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=bytes.fromhex(salt_hex),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(hash_hex) // 2,
    )
    return hmac.compare_digest(digest.hex(), hash_hex)


def count_users(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(User)).one())


def get_user(session: Session, username: str) -> User | None:
    return session.exec(select(User).where(User.username == username)).first()


def create_user(session: Session, *, username: str, password: str, role: Role | str) -> User:
    """Add a user; raises :class:`UserError` for a taken name, an unknown role or a short password."""
    username = username.strip()
    if not username or any(c.isspace() for c in username):
        raise UserError("The user name must be non-empty and contain no spaces.")
    try:
        role = Role(role)
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise UserError(f"Unknown role {role!r}; use one of: {valid}.") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if get_user(session, username) is not None:
        raise UserError(f"A user named {username!r} already exists.")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, *, username: str, password: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise UserError(f"No user named {username!r}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    user.password_hash = hash_password(password)
    session.add(user)
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, else None (same answer for either mistake)."""
    user = get_user(session, username.strip())
    if user is None or not user.active:
        # Hash anyway so a wrong name takes as long as a wrong password.
        verify_password(password, _DUMMY_HASH)
        return None
    return user if verify_password(password, user.password_hash) else None


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
    row = session.exec(
        select(ApiToken).where(ApiToken.token_sha256 == _token_digest(token))
    ).first()
    if row is None or row.expires_at < utcnow():
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.active else None


def revoke_token(session: Session, token: str) -> bool:
    row = session.exec(
        select(ApiToken).where(ApiToken.token_sha256 == _token_digest(token))
    ).first()
    if row is None:
        return False
    session.delete(row)
    return True


_DUMMY_HASH = (
    "scrypt$16384$8$1$00000000000000000000000000000000$"
    "0000000000000000000000000000000000000000000000000000000000000000"
)
