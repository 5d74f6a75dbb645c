"""Users: scrypt hashes, tokens, and ``panelbeater user add`` with --password-stdin."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import init_data_dir
from typer.testing import CliRunner


@pytest.fixture
def data(tmp_path: Path) -> Path:
    init_data_dir(tmp_path / "data")
    return tmp_path / "data"


def test_hash_is_salted_and_verifies() -> None:
    from services.accounts.users import hash_password, verify_password

    a, b = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert a != b and a.startswith("scrypt$") and "s3cret" not in a
    assert verify_password("s3cret-pass", a) and not verify_password("s3cret-pasS", a)
    assert not verify_password("x", "garbage")


def test_tokens_are_stored_hashed_and_expire(data: Path) -> None:
    from sqlmodel import select

    from db.models import ApiToken
    from db.session import session_scope
    from services.accounts.users import create_user, issue_token, user_for_token

    with session_scope() as s:
        user = create_user(s, username="ann", password="long enough", role="annotator")
        token = issue_token(s, user)
        old = issue_token(s, user, ttl_hours=-1)
    with session_scope() as s:
        assert user_for_token(s, token).username == "ann"
        assert user_for_token(s, old) is None and user_for_token(s, "") is None
        stored = [t.token_sha256 for t in s.exec(select(ApiToken)).all()]
        assert token not in stored and len(stored) == 2


def test_cli_user_add_from_stdin_and_errors(data: Path) -> None:
    from cli.main import app
    from db.session import session_scope
    from services.accounts.users import authenticate

    runner = CliRunner()
    r = runner.invoke(app, ["--data-dir", str(data), "user", "list"])
    assert r.exit_code == 0 and "panelbeater user add NAME --role admin" in r.output
    r = runner.invoke(
        app,
        ["--data-dir", str(data), "user", "add", "boss", "--role", "admin", "--password-stdin"],
        input="a long passphrase\n",
    )
    assert r.exit_code == 0, r.output
    with session_scope() as s:
        assert authenticate(s, "boss", "a long passphrase").role.value == "admin"
        assert authenticate(s, "boss", "wrong") is None
    dup = runner.invoke(
        app,
        ["--data-dir", str(data), "user", "add", "boss", "--password-stdin"],
        input="another one!\n",
    )
    assert dup.exit_code == 1 and "already exists" in dup.output
    bad_role = runner.invoke(
        app,
        ["--data-dir", str(data), "user", "add", "x", "--role", "god", "--password-stdin"],
        input="whatever1\n",
    )
    assert bad_role.exit_code == 1 and "unknown role" in bad_role.output
    short = runner.invoke(
        app, ["--data-dir", str(data), "user", "add", "y", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1 and "at least" in short.output


def test_openapi_lists_the_routes(data: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from api.router import api_router

    app = FastAPI()
    app.include_router(api_router, prefix="/api")
    paths = TestClient(app).get("/openapi.json").json()["paths"]
    for p in [
        "/api/health",
        "/api/login",
        "/api/images",
        "/api/images/{image_id}",
        "/api/images/{image_id}/file",
        "/api/images/{image_id}/annotations",
        "/api/queue/{direction}",
        "/api/export/{fmt}",
        "/api/images/{image_id}/assist",
    ]:
        assert p in paths, p


def test_gradio_handlers_check_the_token(data: Path) -> None:
    import gradio as gr

    from annotator import app as ui
    from annotator.exports_panel import export_file
    from db.session import session_scope
    from services.accounts.users import create_user

    with session_scope() as s:
        create_user(s, username="ann", password="long enough", role="annotator")
        create_user(s, username="boss", password="long enough", role="lead")
    bad = ui.login("ann", "wrong password")
    assert bad[0] == "" and "Wrong" in bad[-1]
    ann = ui.login("ann", "long enough")
    token = ann[0]
    assert token and ann[5]["visible"] is False  # no dashboard tab for annotators
    assert '"role": "annotator"' in ann[4]
    with pytest.raises(gr.Error):
        ui.dashboard(token)
    with pytest.raises(gr.Error):
        export_file(token, "coco")
    with pytest.raises(gr.Error):
        ui.dashboard("forged")
    lead = ui.login("boss", "long enough")
    assert lead[5]["visible"] is True
    summary, *_ = ui.dashboard(lead[0])
    assert "photos" in summary
    assert ui.restore_token(lead[0])[0] == lead[0]
    ui.logout(lead[0])
    assert ui.restore_token(lead[0])[0] == ""


def test_the_first_start_hint_names_the_data_dir_so_its_command_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import shlex

    from app import _first_start_hint
    from cli.main import app
    from core.config import configure
    from db.session import reset_engine, session_scope
    from services.accounts.users import authenticate

    served = tmp_path / "served data"  # a space, too: the printed command quotes it
    init_data_dir(served)
    _first_start_hint()
    line = next(x for x in capsys.readouterr().out.splitlines() if "user add" in x)
    words = shlex.split(line)
    assert words[0] == "panelbeater" and "NAME" in words
    # Pasted into another shell, in another folder, on the CLI's own defaults.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    configure(start_worker=False)
    reset_engine()
    args = ["boss" if w == "NAME" else w for w in words[1:]]
    r = CliRunner().invoke(app, [*args, "--password-stdin"], input="a long passphrase\n")
    assert r.exit_code == 0, r.output
    init_data_dir(served)
    with session_scope() as s:
        assert authenticate(s, "boss", "a long passphrase").role.value == "admin"
