"""The UI's own routes under /ui are no anonymous door; every response carries the security
headers; request bodies are bounded."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from browser_helpers import PASSWORD, seed_workspace
from fastapi.testclient import TestClient

MiB = 1024 * 1024


def _build(tmp: Path, monkeypatch: pytest.MonkeyPatch, **env: str):
    """The whole app (API and UI) on a fresh seeded store, with Gradio's files in ``tmp``."""
    from app import create_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
    monkeypatch.setenv("PANELBEATER_ALLOWED_HOSTS", "testserver")  # the TestClient's Host
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seeded = seed_workspace(tmp / "data", n_synthetic=2)
    return create_app(), seeded


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[SimpleNamespace]:
    from core.config import reset_settings
    from db.session import reset_engine

    tmp = tmp_path_factory.mktemp("ui-security")
    with pytest.MonkeyPatch.context() as mp:
        app, seeded = _build(tmp, mp)
        with TestClient(app) as client:  # the lifespan starts Gradio's queue

            def token(role: str) -> str:
                r = client.post(
                    "/api/login", json={"username": seeded.users[role], "password": PASSWORD}
                )
                assert r.status_code == 200, r.text
                return r.json()["token"]

            yield SimpleNamespace(
                app=app, client=client, seeded=seeded, token=token, cache=tmp / "gradio"
            )
    reset_engine()
    reset_settings()


@pytest.fixture
def anonymous(world) -> TestClient:
    world.client.cookies.clear()
    return world.client


def _signed_in(world, role: str = "lead") -> TestClient:
    """The shared client holding the session cookie of a fresh sign-in."""
    world.client.cookies.clear()
    token = world.token(role)
    r = world.client.post("/ui/session", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204, r.text
    return world.client


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def _blocks(app):
    mount = next(r for r in app.routes if getattr(r, "path", "") == "/ui")
    return mount.app.get_blocks()


def _fn_id(app, handler) -> int:
    return next(i for i, f in _blocks(app).fns.items() if f.fn is handler)


# ---------- Gradio's routes need a session ----------


def test_anonymous_upload_is_refused_and_writes_nothing(world, anonymous) -> None:
    before = _files(world.cache)
    r = anonymous.post(
        "/ui/gradio_api/upload", files={"files": ("junk.bin", b"x" * 10_000, "image/png")}
    )
    assert r.status_code in (401, 403), r.text
    assert "Sign in" in r.json()["detail"]
    assert _files(world.cache) == before
    anonymous.cookies.set("panelbeater_session", "forged")
    forged = anonymous.post(
        "/ui/gradio_api/upload",
        files={"files": ("junk.bin", b"x", "image/png")},
        headers={"Authorization": "Bearer forged"},
    )
    anonymous.cookies.clear()
    assert forged.status_code == 401 and _files(world.cache) == before


def test_a_signed_in_upload_is_stored_and_served_to_sessions_only(world) -> None:
    client = _signed_in(world, "annotator")
    r = client.post("/ui/gradio_api/upload", files={"files": ("note.txt", b"hello", "text/plain")})
    assert r.status_code == 200, r.text
    (path,) = r.json()
    assert Path(path).read_bytes() == b"hello"
    assert client.get(f"/ui/gradio_api/file={path}").content == b"hello"
    client.cookies.clear()
    assert client.get(f"/ui/gradio_api/file={path}").status_code in (401, 403)
    assert client.head(f"/ui/gradio_api/file={path}").status_code in (401, 403)
    # nor does Gradio fetch remote URLs for strangers
    assert client.get("/ui/gradio_api/file=https://example.com/x.png").status_code == 401
    # a bearer header works as well as the cookie (for scripts)
    bearer = {"Authorization": f"Bearer {world.token('annotator')}"}
    assert client.get(f"/ui/gradio_api/file={path}", headers=bearer).content == b"hello"


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/ui/gradio_api/upload_progress?upload_id=x"),
        ("get", "/ui/gradio_api/info"),
        ("get", "/ui/gradio_api/openapi.json"),
        ("post", "/ui/gradio_api/run/predict"),
        ("post", "/ui/gradio_api/call/login"),
        ("post", "/ui/gradio_api/stream/x"),
        ("get", "/ui/gradio_api/proxy=https://example.hf.space/x"),
        ("get", "/ui/gradio_api/file/x"),
        ("get", "/ui/monitoring"),
    ],
)
def test_other_gradio_routes_need_a_session(anonymous, method: str, path: str) -> None:
    r = getattr(anonymous, method)(path, **({"json": {"data": []}} if method == "post" else {}))
    assert r.status_code == 401, (path, r.status_code, r.text)


def test_the_login_page_loads_without_a_session(anonymous) -> None:
    page = anonymous.get("/ui/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "gradio_config" in page.text
    assert anonymous.get("/ui/config").status_code == 200
    assert anonymous.get("/ui/theme.css").status_code == 200
    asset = re.search(r'src="\./(assets/[^"]+\.js)"', page.text).group(1)
    assert anonymous.get(f"/ui/{asset}").status_code == 200
    assert anonymous.get("/").status_code == 200  # redirected to the page


def test_anonymous_queue_runs_only_the_sign_in_events(world, anonymous) -> None:
    from annotator import app as ui

    def join(fn, data) -> int:
        body = {"data": data, "fn_index": _fn_id(world.app, fn), "session_hash": "pbtest01"}
        return world.client.post("/ui/gradio_api/queue/join", json=body).status_code

    assert join(ui.login, ["lead1", "wrong password"]) == 200
    # the dashboard's photo upload would copy (or download) its files while preparing inputs
    url_file = {"path": "https://example.com/a.jpg", "url": "https://example.com/a.jpg"}
    assert join(ui.upload_photos, ["", [url_file]]) == 401
    assert world.client.post("/ui/gradio_api/queue/join", content=b"not json").status_code == 401
    _signed_in(world, "lead")
    assert join(ui.upload_photos, ["", []]) == 200


# ---------- the session cookie ----------


def test_the_session_cookie_is_httponly_strict_and_secure_behind_tls(world) -> None:
    from annotator import app as ui
    from annotator.session import COOKIE

    client = world.client
    client.cookies.clear()
    assert client.post("/ui/session").status_code == 401
    assert client.post("/ui/session", headers={"Authorization": "Bearer nope"}).status_code == 401
    token = world.token("annotator")
    r = client.post("/ui/session", headers={"Authorization": f"Bearer {token}"})
    cookie = r.headers["set-cookie"].lower()
    assert r.status_code == 204 and f"{COOKIE}={token}".lower() in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert "secure" not in cookie.replace("httponly", "")
    tls = TestClient(world.app, base_url="https://testserver")
    r = tls.post("/ui/session", headers={"Authorization": f"Bearer {token}"})
    assert "; secure" in r.headers["set-cookie"].lower()
    # a page reload restores the session from the cookie, and only while the token is valid
    assert ui.restore(SimpleNamespace(cookies={COOKIE: token}))[0] == token
    assert ui.restore(SimpleNamespace(cookies={}))[0] == ""
    r = client.delete("/ui/session")
    assert r.status_code == 204 and "max-age=0" in r.headers["set-cookie"].lower()


def test_ui_config_holds_no_browser_secret(anonymous) -> None:
    config = anonymous.get("/ui/config").json()

    def keys(node) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield k
                yield from keys(v)
        elif isinstance(node, list):
            for v in node:
                yield from keys(v)

    assert "secret" not in set(keys(config))
    assert not [c for c in config["components"] if c.get("type") == "browserstate"]


# ---------- exports ----------


def _export_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("panelbeater-ui-export-*"))


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_an_export_is_served_to_sessions_only_and_leaves_no_folder(world, fmt: str) -> None:
    from annotator.exports_panel import export_file

    before = _export_dirs()
    path = Path(export_file(world.token("lead"), fmt))
    assert _export_dirs() - before == set()
    assert path.is_file() and path.is_relative_to(world.cache)
    client = world.client
    client.cookies.clear()
    assert client.get(f"/ui/gradio_api/file={path}").status_code == 401
    _signed_in(world, "lead")
    r = client.get(f"/ui/gradio_api/file={path}")
    assert r.status_code == 200 and r.content == path.read_bytes()


# ---------- headers ----------


@pytest.mark.parametrize(
    "path",
    ["/", "/ui/", "/ui/config", "/ui/theme.css", "/api/health", "/api/images", "/docs", "/redoc"],
)
def test_every_response_carries_the_security_headers(anonymous, path: str) -> None:
    r = anonymous.get(path, follow_redirects=False)
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (path, csp)
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert r.headers.get("x-frame-options") == "DENY"


def _assert_security_headers(r) -> None:
    assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), r.status_code
    assert r.headers.get("x-content-type-options") == "nosniff", r.status_code
    assert r.headers.get("x-frame-options") == "DENY", r.status_code


def test_a_refused_or_missing_path_carries_the_headers_too(anonymous) -> None:
    for r in (
        anonymous.post("/ui/gradio_api/upload", files={"files": ("a", b"a")}),
        anonymous.get("/api/nowhere"),
    ):
        _assert_security_headers(r)


def test_error_answers_carry_the_headers_too(
    world, anonymous, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4xx from routing, validation and sign-in, and a 500 from an exception no handler
    takes (Starlette answers that one outside every middleware)."""
    answers = {
        404: anonymous.get("/api/nowhere"),
        422: anonymous.post("/api/login", json={"username": "x"}),
        401: anonymous.get("/api/images"),
    }

    def broken(*_a, **_k):
        raise RuntimeError("a fault the route does not expect")

    monkeypatch.setattr("services.accounts.users.authenticate", broken)
    crashing = TestClient(world.app, raise_server_exceptions=False)
    answers[500] = crashing.post("/api/login", json={"username": "x", "password": "y"})
    for status, r in answers.items():
        assert r.status_code == status, (status, r.text)
        _assert_security_headers(r)
    assert "a fault" not in answers[500].text  # the exception's text stays in the log


def test_the_ui_page_runs_only_its_own_inline_scripts(anonymous) -> None:
    r = anonymous.get("/ui/", headers={"Accept": "text/html", "Accept-Encoding": "gzip, br"})
    csp = r.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]+)", csp).group(1).split()
    assert "'unsafe-inline'" not in script_src
    nonce = next(s for s in script_src if s.startswith("'nonce-"))[len("'nonce-") : -1]
    tags = re.findall(r"<script\b[^>]*>", r.text, flags=re.IGNORECASE)
    assert tags and all(f'nonce="{nonce}"' in t for t in tags)
    assert int(r.headers["content-length"]) == len(r.content)
    again = anonymous.get("/ui/", headers={"Accept": "text/html"})
    assert again.headers["content-security-policy"] != csp  # a fresh nonce each time
    api = anonymous.get("/api/health").headers["content-security-policy"]
    assert api.startswith("default-src 'none'")


# ---------- request body size ----------


def test_the_request_body_limit_is_a_setting_with_a_sane_default(monkeypatch) -> None:
    from core.config import Settings

    monkeypatch.delenv("PANELBEATER_MAX_REQUEST_BYTES", raising=False)
    assert Settings().max_request_bytes == 200 * MiB
    monkeypatch.setenv("PANELBEATER_MAX_REQUEST_BYTES", "1234")
    assert Settings().max_request_bytes == 1234


def test_an_upload_over_the_limit_gets_413_declared_or_streamed(tmp_path, monkeypatch) -> None:
    """The routes that take files have ``max_request_bytes``; the sign-in and JSON routes
    have their own, smaller limits (tests/test_request_bodies.py)."""
    from core.config import configure, get_settings
    from db.session import reset_engine

    saved = get_settings()  # the module's app keeps its store
    limit = 64 * 1024
    app, seeded = _build(tmp_path, monkeypatch, PANELBEATER_MAX_REQUEST_BYTES=str(limit))
    try:
        with TestClient(app) as client:
            token = client.post(
                "/api/login", json={"username": seeded.users["lead"], "password": PASSWORD}
            ).json()["token"]
            bearer = {"Authorization": f"Bearer {token}"}
            big = [("files", ("big.jpg", b"x" * (2 * limit), "image/jpeg"))]
            r = client.post("/api/images/upload", files=big, headers=bearer)
            assert r.status_code == 413
            detail = r.json()["detail"]
            assert str(limit) in detail and "PANELBEATER_MAX_REQUEST_BYTES" in detail
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]

            def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
                for _ in range(8):
                    yield b"y" * (limit // 4)

            form = {"Content-Type": "multipart/form-data; boundary=b", **bearer}
            r = client.post("/api/images/upload", content=chunks(), headers=form)
            assert r.status_code == 413 and str(limit) in r.json()["detail"]
            # the UI's upload too, for a signed-in user, and nothing is kept
            client.post("/ui/session", headers=bearer)
            before = _files(tmp_path / "gradio")
            r = client.post(
                "/ui/gradio_api/upload",
                files={"files": ("big.jpg", b"z" * (2 * limit), "image/jpeg")},
            )
            assert r.status_code == 413 and _files(tmp_path / "gradio") == before
    finally:
        configure(**saved.model_dump())
        reset_engine()


def test_the_jobs_poll_stops_quietly_once_the_session_has_ended(store) -> None:
    """An expired session stops the dashboard's timer instead of an error every 2 s."""
    from annotator.jobs_panel import jobs_poll

    rows, timer = jobs_poll("a token that was revoked")
    assert rows == [] and timer.active is False
