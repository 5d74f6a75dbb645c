"""Request bodies are bounded by route before they are read: a sign-in holds a few hundred
bytes, JSON a few MiB, and only the routes that take files get ``max_request_bytes``.

Anyone may post to ``/api/login``: with one limit for every route, three anonymous 190 MB
sign-ins took the server from 461 MB to 2.9 GB before each got its 401.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from types import SimpleNamespace

import anyio
import numpy as np
import pytest
from browser_helpers import PASSWORD, seed_workspace
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from api.middleware import BodyLimit, BodyLimitMiddleware

KiB = 1024
#: The module's app: small enough to cross in a test, the upload limit far above JSON's.
JSON_LIMIT = 64 * KiB
UPLOAD_LIMIT = 4 * 1024 * KiB


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """The whole app (API and UI) on a seeded store; the sign-in limit is the default."""
    from app import create_app
    from core.config import reset_settings
    from db.session import reset_engine

    tmp = tmp_path_factory.mktemp("bodies")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
        mp.delenv("PANELBEATER_MAX_LOGIN_BODY_BYTES", raising=False)
        mp.setenv("PANELBEATER_MAX_JSON_BODY_BYTES", str(JSON_LIMIT))
        mp.setenv("PANELBEATER_MAX_REQUEST_BYTES", str(UPLOAD_LIMIT))
        mp.setenv("PANELBEATER_ALLOWED_HOSTS", "testserver")  # the TestClient's Host
        seeded = seed_workspace(tmp / "data", n_synthetic=1)
        app = create_app()
        with TestClient(app) as client:
            yield SimpleNamespace(app=app, client=client, seeded=seeded)
    reset_engine()
    reset_settings()


def _sign_in(client: TestClient, role: str, seeded) -> dict[str, str]:
    r = client.post("/api/login", json={"username": seeded.users[role], "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _noise_png(side: int) -> bytes:
    """A PNG that does not compress: about ``3 * side**2`` bytes."""
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# ---------- settings ----------


def test_the_limits_are_settings_with_small_defaults_for_what_anyone_may_send(monkeypatch) -> None:
    from core.config import Settings

    for name in ("LOGIN_BODY_BYTES", "JSON_BODY_BYTES", "REQUEST_BYTES"):
        monkeypatch.delenv(f"PANELBEATER_MAX_{name}", raising=False)
    s = Settings()
    assert s.max_login_body_bytes == 2 * KiB
    assert s.max_json_body_bytes == 16 * 1024 * KiB
    assert s.max_request_bytes == 200 * 1024 * KiB
    monkeypatch.setenv("PANELBEATER_MAX_LOGIN_BODY_BYTES", "4096")
    assert Settings().max_login_body_bytes == 4096


def test_a_sign_in_limit_too_small_for_the_longest_name_and_password_fails_at_start() -> None:
    from pydantic import ValidationError

    from core.config import Settings

    with pytest.raises(ValidationError, match="PANELBEATER_MAX_LOGIN_BODY_BYTES=2048 is too small"):
        Settings(max_password_chars=1000)
    assert Settings(max_password_chars=1000, max_login_body_bytes=8192).max_password_chars == 1000


# ---------- the sign-in ----------


def _scope(path: str, headers: dict[str, str]) -> dict:
    headers = {"Host": "testserver", **headers}  # a host the server answers to (HostGuard)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def _call(app, scope: dict, receive) -> list[dict]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def main() -> None:
        await app(scope, receive, send)

    anyio.run(main)
    return sent


def test_a_streamed_sign_in_is_cut_off_at_its_limit_and_never_reaches_the_handler(
    world, monkeypatch
) -> None:
    """A chunked sign-in of 1 MiB, valid JSON, sent 256 bytes at a time: the app pulls only
    what the 2 KiB limit needs to be crossed, answers 413, and never signs anyone in."""
    signed_in: list[str] = []
    monkeypatch.setattr(
        "services.accounts.users.authenticate",
        lambda session, username, password, **kw: signed_in.append(username),
    )
    chunk, n = 256, 4096
    parts = [b'{"username": "lead1", "password": "'] + [b"x" * chunk] * n + [b'"}']
    pulled = 0

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        more = pulled < len(parts)
        return {"type": "http.request", "body": parts[pulled - 1], "more_body": more}

    sent = _call(world.app, _scope("/api/login", {"content-type": "application/json"}), receive)
    assert sent[0]["status"] == 413
    detail = json.loads(sent[1]["body"])["detail"]
    assert "/api/login" in detail and "2048" in detail
    assert "PANELBEATER_MAX_LOGIN_BODY_BYTES" in detail
    assert pulled <= 2048 // chunk + 2, f"{pulled} of {len(parts)} chunks were read"
    assert signed_in == []


def test_a_declared_sign_in_over_the_limit_is_refused_before_its_body_is_read(world) -> None:
    async def receive() -> dict:
        raise AssertionError("the body of a sign-in declared too large was read")

    headers = {"content-type": "application/json", "content-length": str(190 * 1024 * KiB)}
    sent = _call(world.app, _scope("/api/login", headers), receive)
    assert sent[0]["status"] == 413
    assert "PANELBEATER_MAX_LOGIN_BODY_BYTES" in json.loads(sent[1]["body"])["detail"]


def test_a_chunked_sign_in_over_the_limit_gets_413_and_a_normal_one_still_works(world) -> None:
    client = world.client

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"username": "lead1", "password": "'
        for _ in range(64):
            yield b"y" * KiB
        yield b'"}'

    r = client.post("/api/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "PANELBEATER_MAX_LOGIN_BODY_BYTES" in r.json()["detail"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    wrong = client.post("/api/login", json={"username": "lead1", "password": "y" * 128})
    assert wrong.status_code == 401
    _sign_in(client, "lead", world.seeded)


# ---------- JSON and upload routes ----------


def test_a_json_route_refuses_a_body_over_the_json_limit(world) -> None:
    headers = {"Content-Type": "application/json", **_sign_in(world.client, "lead", world.seeded)}
    image_id = world.seeded.image_ids[0]
    body = json.dumps({"expected_version": 0, "annotations": [], "pad": "z" * JSON_LIMIT})
    r = world.client.put(f"/api/images/{image_id}/annotations", content=body, headers=headers)
    assert r.status_code == 413
    detail = r.json()["detail"]
    assert str(JSON_LIMIT) in detail and "PANELBEATER_MAX_JSON_BODY_BYTES" in detail


def test_photo_uploads_keep_the_larger_upload_limit(world) -> None:
    png = _noise_png(256)
    assert JSON_LIMIT < len(png) < UPLOAD_LIMIT
    headers = _sign_in(world.client, "lead", world.seeded)
    files = [("files", ("noise.png", png, "image/png"))]
    r = world.client.post("/api/images/upload", files=files, headers=headers)
    assert r.status_code == 201, r.text
    # the UI's own upload, with the session cookie
    world.client.post("/ui/session", headers=headers)
    r = world.client.post("/ui/gradio_api/upload", files={"files": ("n.png", png, "image/png")})
    assert r.status_code == 200, r.text
    world.client.cookies.clear()
    too_big = [("files", ("big.png", b"p" * (UPLOAD_LIMIT + 1), "image/png"))]
    r = world.client.post("/api/images/upload", files=too_big, headers=headers)
    assert r.status_code == 413 and "PANELBEATER_MAX_REQUEST_BYTES" in r.json()["detail"]


def test_every_route_that_takes_files_has_the_upload_limit(world) -> None:
    """A new route with a file field must join ``app.API_UPLOAD_PATHS``, or it would refuse
    every photo larger than a JSON body."""
    from app import API_UPLOAD_PATHS

    paths = world.client.get("/openapi.json").json()["paths"]
    multipart = {
        path
        for path, operations in paths.items()
        for op in operations.values()
        if "multipart/form-data" in op.get("requestBody", {}).get("content", {})
    }
    assert multipart == set(API_UPLOAD_PATHS)


# ---------- the middleware alone ----------


def test_the_middleware_picks_the_limit_by_path_with_or_without_a_trailing_slash() -> None:
    small, big, default = BodyLimit(10, "max_login_body_bytes"), BodyLimit(99), BodyLimit(50)
    mw = BodyLimitMiddleware(None, default=default, routes={"/api/login": small, "/up": big})
    assert mw.limit_for("/api/login") is small and mw.limit_for("/api/login/") is small
    assert mw.limit_for("/up") is big and mw.limit_for("/api/users") is default


def test_the_answer_names_the_route_the_limit_its_setting_and_what_to_do() -> None:
    async def app(scope, receive, send) -> None:
        raise AssertionError("not reached")

    limit = BodyLimit(10, "max_login_body_bytes", "Send a name and a password.")
    mw = BodyLimitMiddleware(app, default=limit)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent = _call(mw, _scope("/api/login", {"content-length": "11"}), receive)
    detail = json.loads(sent[1]["body"])["detail"]
    assert detail == (
        "The request body is larger than /api/login accepts: at most 10 bytes "
        "(setting PANELBEATER_MAX_LOGIN_BODY_BYTES). Send a name and a password."
    )
