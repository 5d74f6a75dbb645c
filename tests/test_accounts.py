"""Accounts: sign-in throttling with backoff, token revocation on a new
password or a disabled user, OWASP scrypt cost with upgrade at sign-in, a private data dir."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

PASSWORD = "correct horse battery"


class Clock:
    """Stands in for ``services.accounts.throttle._now`` so a test can step past a lockout."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def fast_hashes(monkeypatch):
    """A low scrypt cost for tests about throttling and tokens, where the cost is beside the point."""
    from services.accounts import users

    monkeypatch.setattr(users, "_scrypt_n_for_tests", 2**10)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    from services.accounts import throttle

    c = Clock()
    monkeypatch.setattr(throttle, "_now", c)
    return c


@pytest.fixture
def limits(store, monkeypatch):
    """Small limits: 3 failures per name, 4 per address, 60 s lockout doubling to 600 s."""
    from core.config import get_settings

    s = get_settings()
    for name, value in {
        "login_max_failures_per_user": 3,
        "login_max_failures_per_address": 4,
        "login_lockout_seconds": 60.0,
        "login_lockout_max_seconds": 600.0,
        "login_failure_window_seconds": 900.0,
    }.items():
        monkeypatch.setattr(s, name, value)
    return s


@pytest.fixture
def ann(db_session, fast_hashes):
    from services.accounts.users import create_user

    user = create_user(db_session, username="ann", password=PASSWORD, role="annotator")
    db_session.commit()
    return user


# -- throttling -----------------------------------------------------------------------


def test_bad_passwords_lock_the_name_and_the_window_lets_the_right_one_in(
    db_session, ann, limits, clock
) -> None:
    from services.accounts.users import authenticate
    from services.errors import ServiceError, TooManyAttempts

    for _ in range(3):
        assert authenticate(db_session, "ann", "wrong password", address="10.0.0.1") is None
    # The right password, even from another address, waits out the lockout.
    with pytest.raises(TooManyAttempts) as locked:
        authenticate(db_session, "ann", PASSWORD, address="10.0.0.2")
    assert isinstance(locked.value, ServiceError)
    assert locked.value.retry_after == 60 and "60 seconds" in str(locked.value)
    clock.advance(30)
    with pytest.raises(TooManyAttempts) as still:
        authenticate(db_session, "ann", PASSWORD, address="10.0.0.2")
    assert still.value.retry_after == 30
    clock.advance(31)
    assert authenticate(db_session, "ann", PASSWORD, address="10.0.0.2").username == "ann"
    # success forgot the name's failures: three more are needed to lock it again
    for _ in range(2):
        assert authenticate(db_session, "ann", "wrong password", address="10.0.0.3") is None
    assert authenticate(db_session, "ann", PASSWORD, address="10.0.0.3") is not None


def test_each_failure_past_the_limit_doubles_the_lockout(db_session, ann, limits, clock) -> None:
    from services.accounts.users import authenticate
    from services.errors import TooManyAttempts

    for _ in range(3):
        authenticate(db_session, "ann", "wrong password")
    waits = []
    for _ in range(5):
        with pytest.raises(TooManyAttempts) as e:
            authenticate(db_session, "ann", PASSWORD)
        waits.append(e.value.retry_after)
        clock.advance(e.value.retry_after)
        assert authenticate(db_session, "ann", "wrong password") is None
    assert waits == [60, 120, 240, 480, 600]  # capped at login_lockout_max_seconds
    # long after the last lockout ended, the count starts again
    clock.advance(600 + 901)
    assert authenticate(db_session, "ann", PASSWORD) is not None


def test_an_address_guessing_many_names_is_locked(db_session, ann, limits, clock) -> None:
    from services.accounts.users import authenticate
    from services.errors import TooManyAttempts

    for name in ["bob", "carol", "ann"]:
        assert authenticate(db_session, name, "guess-1234", address="203.0.113.9") is None
    # a valid sign-in from the address does not reset the address's count
    assert authenticate(db_session, "ann", PASSWORD, address="203.0.113.9") is not None
    assert authenticate(db_session, "dave", "guess-1234", address="203.0.113.9") is None
    with pytest.raises(TooManyAttempts):
        authenticate(db_session, "ann", PASSWORD, address="203.0.113.9")
    # ann herself is not locked: from elsewhere she signs in
    assert authenticate(db_session, "ann", PASSWORD, address="198.51.100.7") is not None
    # an IPv6 client counts by its /64
    for i in range(4):
        authenticate(db_session, f"x{i}", "guess-1234", address=f"2001:db8:1:2::{i + 1}")
    with pytest.raises(TooManyAttempts):
        authenticate(db_session, "ann", PASSWORD, address="2001:db8:1:2:ffff::9")
    clock.advance(61)
    assert authenticate(db_session, "ann", PASSWORD, address="203.0.113.9") is not None


def test_unknown_names_lock_like_real_ones(db_session, ann, limits, clock) -> None:
    from services.accounts.users import authenticate
    from services.errors import TooManyAttempts

    for _ in range(3):
        assert authenticate(db_session, "nobody", "wrong password") is None
    with pytest.raises(TooManyAttempts) as e:
        authenticate(db_session, "nobody", "wrong password")
    assert e.value.retry_after == 60


def test_failures_survive_the_callers_rollback_and_other_sessions_see_them(
    ann, limits, clock
) -> None:
    """The API answers 401 by raising, which rolls the request's session back; every web
    process shares one count."""
    from db.session import session_scope
    from services.accounts.users import authenticate
    from services.errors import TooManyAttempts

    for _ in range(3):
        with pytest.raises(RuntimeError), session_scope() as s:
            assert authenticate(s, "ann", "wrong password", address="10.0.0.1") is None
            raise RuntimeError("401")
    with session_scope() as other, pytest.raises(TooManyAttempts):
        authenticate(other, "ann", PASSWORD, address="10.0.0.9")


def test_a_new_password_lifts_the_lockout(db_session, ann, limits, clock) -> None:
    from services.accounts.users import authenticate, set_password

    for _ in range(3):
        authenticate(db_session, "ann", "wrong password")
    set_password(db_session, username="ann", password="a brand new one")
    assert authenticate(db_session, "ann", "a brand new one") is not None


# -- tokens and disabled users --------------------------------------------------------


def test_a_new_password_revokes_every_token(db_session, ann) -> None:
    from services.accounts.users import authenticate, issue_token, set_password, user_for_token

    bob = _user(db_session, "bob")
    tokens = [issue_token(db_session, ann), issue_token(db_session, ann)]
    bobs = issue_token(db_session, bob)
    set_password(db_session, username="ann", password="a brand new one")
    assert [user_for_token(db_session, t) for t in tokens] == [None, None]
    assert user_for_token(db_session, bobs).username == "bob"  # other users keep theirs
    assert authenticate(db_session, "ann", PASSWORD) is None
    fresh = issue_token(db_session, authenticate(db_session, "ann", "a brand new one"))
    assert user_for_token(db_session, fresh).username == "ann"


def test_disable_revokes_tokens_and_blocks_sign_in(db_session, ann) -> None:
    from services.accounts.users import (
        UserError,
        authenticate,
        disable_user,
        enable_user,
        issue_token,
        user_for_token,
    )

    token = issue_token(db_session, ann)
    disable_user(db_session, username="ann")
    assert user_for_token(db_session, token) is None
    assert authenticate(db_session, "ann", PASSWORD) is None
    enable_user(db_session, username="ann")
    assert user_for_token(db_session, token) is None  # still revoked after re-enabling
    assert authenticate(db_session, "ann", PASSWORD) is not None
    with pytest.raises(UserError, match="No user named 'zed'"):
        disable_user(db_session, username="zed")


def test_cli_user_disable_and_enable(store: Path, ann) -> None:
    from cli.main import app
    from db.session import session_scope
    from services.accounts.users import authenticate, issue_token, user_for_token

    with session_scope() as s:
        token = issue_token(s, ann)
    runner = CliRunner()
    r = runner.invoke(app, ["--data-dir", str(store), "user", "disable", "ann"])
    assert r.exit_code == 0 and "disabled 'ann'" in r.output, r.output
    with session_scope() as s:
        assert user_for_token(s, token) is None
        assert authenticate(s, "ann", PASSWORD) is None
    listed = runner.invoke(app, ["--data-dir", str(store), "user", "list"])
    assert "ann\tannotator\tdisabled" in listed.output
    r = runner.invoke(app, ["--data-dir", str(store), "user", "enable", "ann"])
    assert r.exit_code == 0, r.output
    with session_scope() as s:
        assert authenticate(s, "ann", PASSWORD) is not None
    missing = runner.invoke(app, ["--data-dir", str(store), "user", "disable", "zed"])
    assert missing.exit_code == 1 and "No user named 'zed'" in missing.output


def _user(session, name: str):
    from services.accounts.users import create_user

    return create_user(session, username=name, password=PASSWORD, role="annotator")


# -- password hashing -----------------------------------------------------------------


def _cost(stored: str) -> tuple[int, int, int]:
    scheme, n, r, p, _salt, _hash = stored.split("$")
    assert scheme == "scrypt"
    return int(n), int(r), int(p)


# -- permissions --------------------------------------------------------------------


def test_permissions_keep_their_names_and_a_misspelt_one_is_an_error() -> None:
    import json

    from db.models import Role
    from services.accounts.users import PERMISSIONS, Permission, can, permissions

    # what the API sends and the workspace reads: the same strings as before the enum
    lead = {"view", "annotate", "assist", "review", "fraud", "dashboard", "export", "retrain"}
    assert {role.value: set(permissions(role)) for role in Role} == {
        "annotator": {"view", "annotate", "assist"},
        "reviewer": {"view", "annotate", "assist", "review"},
        "fraud_analyst": {"view", "annotate", "assist", "fraud"},
        "lead": lead | {"import"},
        "admin": lead | {"import", "users"},
    }
    assert json.dumps(sorted(PERMISSIONS[Role.annotator])) == '["annotate", "assist", "view"]'
    assert f"{Permission.import_}" == "import" and Permission("import") is Permission.import_
    assert can(Role.reviewer, Permission.review) and not can(Role.annotator, Permission.review)
    assert can(Role.fraud_analyst, "fraud")  # a stored or sent name still works
    with pytest.raises(ValueError):
        can(Role.admin, "reveiw")  # a typo is an error, not a silent refusal
    with pytest.raises(AttributeError):
        _ = Permission.reveiw


def test_the_code_names_permissions_by_the_enum() -> None:
    """``can``, ``require`` and the UI's ``_require`` take a Permission member, never a string."""
    import ast

    from conftest import REPO_ROOT

    from services.accounts.users import Permission

    names = {p.value for p in Permission}
    found = []
    for package in ("services", "api", "annotator", "cli", "jobs"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                f = node.func
                called = f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")
                if called in ("can", "require", "_require") and any(
                    isinstance(a, ast.Constant) and a.value in names for a in node.args
                ):
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert found == [], "use services.accounts.users.Permission"


def test_new_hashes_use_owasp_scrypt_cost(monkeypatch) -> None:
    from services.accounts import users

    monkeypatch.setattr(users, "_scrypt_n_for_tests", None)
    stored = users.hash_password(PASSWORD)
    n, r, p = _cost(stored)
    assert n >= 2**17 and r >= 8 and p >= 1
    assert users.verify_password(PASSWORD, stored)
    assert not users.needs_rehash(stored)


def test_an_old_hash_is_upgraded_at_the_next_sign_in(db_session, monkeypatch) -> None:
    """Hashes written before this change have N=2^14; a right password replaces them."""
    import hashlib

    from services.accounts import users

    monkeypatch.setattr(users, "_scrypt_n_for_tests", None)
    salt = bytes(range(16))
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    old = f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"
    from db.models import User

    db_session.add(User(username="old", password_hash=old))
    db_session.commit()
    assert users.needs_rehash(old)

    assert users.authenticate(db_session, "old", "wrong password") is None
    assert users.get_user(db_session, "old").password_hash == old  # a failure changes nothing

    assert users.authenticate(db_session, "old", PASSWORD).username == "old"
    db_session.commit()
    new = users.get_user(db_session, "old").password_hash
    assert new != old and _cost(new)[0] >= 2**17
    assert users.verify_password(PASSWORD, new)


# -- file permissions -----------------------------------------------------------------


def test_a_fresh_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    from conftest import configure_store

    from core.config import reset_settings
    from db.session import get_engine, reset_engine

    data = tmp_path / "parent" / "data"
    old_umask = os.umask(0o022)
    try:
        configure_store(data)
        with get_engine().connect() as conn:  # open it so SQLite makes its -wal file
            conn.exec_driver_sql("SELECT 1")
            files = [data / "panelbeater.db", data / "panelbeater.db-wal"]
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()}
    finally:
        os.umask(old_umask)
        reset_engine()
        reset_settings()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert modes["panelbeater.db"] == 0o600
    assert all(m == 0o600 for m in modes.values()), modes


def test_the_workspace_sign_in_is_throttled_too(store) -> None:
    from annotator.app import login
    from db.session import session_scope
    from services.accounts.users import create_user

    with session_scope() as s:
        create_user(s, username="gina", password="long enough pw", role="annotator")
    for _ in range(5):
        assert login("gina", "wrong password")[-1] == "Wrong user name or password."
    locked = login("gina", "long enough pw")
    assert locked[0] == "" and "Too many failed sign-ins" in locked[-1], locked[-1]


@pytest.mark.parametrize("allow", ["", "127.0.0.1"])
def test_uvicorn_reads_no_forwarded_header_the_app_does(allow) -> None:
    """The app's host guard believes them from the configured proxy only
    (tests/test_ui_origins.py); uvicorn would hide which peer sent them."""
    from app import proxy_options
    from core.config import Settings

    assert proxy_options(Settings(forwarded_allow_ips=allow)) == {"proxy_headers": False}
