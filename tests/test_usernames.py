"""Account fields: user names and passwords have length limits, and a user name is one name
however it is cased, spelt with look-alike letters or padded with invisible characters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from browser_helpers import init_data_dir
from conftest import POSTGRES_URL, _backends, _fresh_postgres_database
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

PASSWORD = "correct horse battery"
MB = 1024 * 1024


def _client() -> TestClient:
    from api.router import api_router

    app = FastAPI()
    app.include_router(api_router, prefix="/api")
    return TestClient(app)


def _login(client: TestClient, username: str, password: str = PASSWORD):
    return client.post("/api/login", json={"username": username, "password": password})


@pytest.fixture
def api(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """An empty store with one admin, ``u_admin``, signed in."""
    from core.config import reset_settings
    from db.session import reset_engine, session_scope
    from services.accounts.users import create_user

    init_data_dir(tmp_path / "data")
    with session_scope() as s:
        create_user(s, username="u_admin", password=PASSWORD, role="admin")
    client = _client()
    token = _login(client, "u_admin").json()["token"]
    yield SimpleNamespace(client=client, admin={"Authorization": f"Bearer {token}"})
    reset_engine()
    reset_settings()


def _add(api: SimpleNamespace, username: str, password: str = PASSWORD):
    body = {"username": username, "password": password, "role": "annotator"}
    return api.client.post("/api/users", json=body, headers=api.admin)


def _usernames() -> list[str]:
    from db.session import session_scope
    from services.accounts.users import list_users

    with session_scope() as s:
        return [u.username for u in list_users(s)]


# ---------- lengths ----------


def test_a_one_megabyte_user_name_is_refused_naming_its_setting(api) -> None:
    r = _add(api, "n" * MB)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "at most 64" in detail and "PANELBEATER_MAX_USERNAME_CHARS" in detail
    assert _add(api, "n" * 64).status_code == 201
    assert _usernames() == ["n" * 64, "u_admin"]


def test_a_ten_megabyte_password_is_refused_naming_its_setting(api) -> None:
    r = _add(api, "ann", "p" * (10 * MB))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "at most 128" in detail and "PANELBEATER_MAX_PASSWORD_CHARS" in detail
    assert _usernames() == ["u_admin"]  # nothing half-written
    assert _add(api, "ann", "p" * 128).status_code == 201
    change = {"password": "q" * (10 * MB)}
    r = api.client.patch("/api/users/ann", json=change, headers=api.admin)
    assert r.status_code == 422 and "PANELBEATER_MAX_PASSWORD_CHARS" in r.json()["detail"]
    assert _login(api.client, "ann", "p" * 128).status_code == 200  # the old one still holds


def test_the_limits_are_settings(monkeypatch, api) -> None:
    from core.config import get_settings

    monkeypatch.setattr(get_settings(), "max_username_chars", 3)
    r = _add(api, "anna")
    assert r.status_code == 422 and "at most 3" in r.json()["detail"]
    assert _add(api, "ann").status_code == 201


# ---------- one name, however it is written ----------


@pytest.mark.parametrize(
    "twin",
    [
        pytest.param("U_ADMIN", id="case"),
        pytest.param("u_\u0430dmin", id="cyrillic-a"),
        pytest.param("u_\u0251dmin", id="latin-alpha"),
        pytest.param("\u03c5_admin", id="greek-upsilon"),
        pytest.param("u_admin\u200b", id="zero-width-space"),
        pytest.param("u_\u2060admin", id="word-joiner"),
        pytest.param("\uff35_\uff41\uff44\uff4d\uff49\uff4e", id="full-width"),
    ],
)
def test_a_name_that_passes_for_an_existing_one_is_refused(api, twin: str) -> None:
    r = _add(api, twin)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "'u_admin'" in detail and ("already exists" in detail or "looks like" in detail)
    assert _usernames() == ["u_admin"]


def test_invisible_characters_and_spaces_are_refused_in_any_name(api) -> None:
    for name in ("new\u200buser", "new\u202euser", "new user", "new\tuser", "   "):
        r = _add(api, name)
        assert r.status_code == 422, name
    assert _usernames() == ["u_admin"]


def test_names_are_stored_folded_and_any_casing_signs_in(api) -> None:
    r = _add(api, "Ana.Lima")
    assert r.status_code == 201 and r.json()["username"] == "ana.lima"
    for typed in ("ana.lima", "ANA.LIMA", "Ana.Lima", " ana.lima "):
        answer = _login(api.client, typed)
        assert answer.status_code == 200, typed
        assert answer.json()["username"] == "ana.lima"
    assert _login(api.client, "ana.lim\u0430").status_code == 401  # a look-alike is not her
    r = api.client.patch("/api/users/ANA.LIMA", json={"active": False}, headers=api.admin)
    assert r.status_code == 200 and r.json()["active"] is False


def test_failed_sign_ins_count_against_the_name_however_it_is_cased(api, monkeypatch) -> None:
    from core.config import get_settings

    monkeypatch.setattr(get_settings(), "login_max_failures_per_user", 3)
    assert _add(api, "ana").status_code == 201
    for typed in ("ANA", "Ana", "aNa"):
        assert _login(api.client, typed, "wrong password").status_code == 401
    assert _login(api.client, "ana").status_code == 429


# ---------- users stored before names were folded ----------


@pytest.fixture(params=_backends())
def store_at_0010(request, tmp_path: Path):
    """An empty store migrated only to 0010, on SQLite and, where a server is configured,
    PostgreSQL; the test upgrades it with ``init_db``."""
    from alembic import command
    from alembic.config import Config

    from core.config import configure, get_settings, reset_settings
    from db.session import MIGRATIONS_DIR, get_engine, reset_engine

    url = _fresh_postgres_database(POSTGRES_URL) if request.param == "postgres" else ""
    configure(data_dir=tmp_path / "data", database_url=url, start_worker=False)
    reset_engine()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", get_settings().db_url.replace("%", "%%"))
    with get_engine().begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0010")
    yield get_engine()
    reset_engine()
    reset_settings()


def test_old_names_keep_their_spelling_and_sign_in_folded(store_at_0010) -> None:
    """``Lead1`` from before 0011 signs in as ``lead1`` too; ``Bob`` and ``bob``, which
    fold alike, each sign in by the exact name, and ``BOB`` is neither."""
    from db.session import init_db, session_scope
    from services.accounts.users import create_user, hash_password

    digest = hash_password(PASSWORD)
    with store_at_0010.begin() as conn:
        for name, role in [("Lead1", "admin"), ("Bob", "annotator"), ("bob", "reviewer")]:
            conn.execute(
                text(
                    'INSERT INTO "user" (username, password_hash, role, active, created_at) '
                    "VALUES (:u, :h, :r, TRUE, '2026-01-01 00:00:00')"
                ),
                {"u": name, "h": digest, "r": role},
            )
    init_db()
    client = _client()
    for typed, expected in [("lead1", "Lead1"), ("LEAD1", "Lead1"), ("Bob", "Bob"), ("bob", "bob")]:
        r = _login(client, typed)
        assert r.status_code == 200, typed
        assert r.json()["username"] == expected
    assert _login(client, "BOB").status_code == 401
    with session_scope() as s, pytest.raises(ValueError, match="'Lead1' already exists"):
        create_user(s, username="lead1", password=PASSWORD, role="annotator")


# ---------- the skeleton ----------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("admin", "ADMIN", True),
        ("admin", "\u0430dmin", True),  # Cyrillic а
        ("admin", "adm\u0456n", True),  # Cyrillic і
        ("paypal", "\u0440\u0430y\u0440\u0430l", True),  # Cyrillic р, а
        ("admin", "ad\u200dmin", True),  # zero-width joiner
        ("admin", "\ufeffadmin", True),  # byte-order mark
        ("strasse", "STRAẞE", True),  # capital sharp s folds to ss
        ("admin", "admins", False),
        ("anna", "ana", False),
        ("jose", "josé", False),
    ],
)
def test_the_skeleton_sees_what_a_reader_would(a: str, b: str, same: bool) -> None:
    from core.names import username_skeleton

    assert (username_skeleton(a) == username_skeleton(b)) is same


def test_folding_is_stable() -> None:
    from core.names import fold_username

    for name in ("Ana", "STRAẞE", "\uff21\uff4e\uff41", "ﬀ", "İstanbul", "ǅ"):
        assert fold_username(fold_username(name)) == fold_username(name)
