"""Origins, sessions and hosts: no other origin reads or changes what a signed-in user may,
an export's link needs the export permission in its project, and no forged Host or forwarded
header reaches the links the UI writes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from browser_helpers import PASSWORD, seed_workspace
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

#: A page on another port of the same host: the same site, another origin.
OTHER_PORT = "http://localhost:7861"
OWN = {"Host": "localhost:7860"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[SimpleNamespace]:
    from app import create_app
    from core.config import reset_settings
    from db.session import reset_engine

    tmp = tmp_path_factory.mktemp("ui-origins")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
        mp.setenv("PANELBEATER_ALLOWED_HOSTS", "testserver,localhost")
        seeded = seed_workspace(tmp / "data", n_synthetic=2)
        app = create_app()
        with TestClient(app) as client:  # the lifespan starts Gradio's queue

            def token(role: str) -> str:
                r = client.post(
                    "/api/login", json={"username": seeded.users[role], "password": PASSWORD}
                )
                assert r.status_code == 200, r.text
                return r.json()["token"]

            yield SimpleNamespace(app=app, client=client, token=token, cache=tmp / "gradio")
    reset_engine()
    reset_settings()


def _signed_in(world, role: str) -> tuple[TestClient, str]:
    client = world.client
    client.cookies.clear()
    token = world.token(role)
    r = client.post("/ui/session", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204, r.text
    return client, token


def _export(world) -> Path:
    from annotator.exports_panel import export_file

    return Path(export_file(world.token("lead"), "coco"))


# ---------- hosts and forwarded headers ----------


@pytest.mark.parametrize("path", ["/ui/config", "/ui/", "/api/health", "/"])
def test_a_host_the_server_is_not_gets_400(world, path: str) -> None:
    r = world.client.get(path, headers={"Host": "evil.test"}, follow_redirects=False)
    assert r.status_code == 400 and "evil.test" not in r.headers.get("location", "")
    assert "PANELBEATER_ALLOWED_HOSTS" in r.json()["detail"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


@pytest.mark.parametrize(
    "forged",
    [
        {"X-Forwarded-Host": "evil.test"},
        {"X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https"},
        {"X-Gradio-Server": "https://evil.test/"},
    ],
)
def test_forwarded_headers_from_a_client_are_not_believed(world, forged) -> None:
    world.client.cookies.clear()
    root = world.client.get("/ui/config", headers=forged).json()["root"]
    assert root == "http://testserver/ui"
    page = world.client.get("/ui/", headers={**forged, "Accept": "text/html"})
    assert page.status_code == 200 and "evil.test" not in page.text
    assert "https://testserver" not in page.text


# ---------- the host guard on its own, behind a proxy ----------


def _echo_app(**guard) -> TestClient:
    from api.hosts import HostGuard

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "scheme": request.url.scheme,
                "client": request.client.host if request.client else None,
                "forwarded_host": request.headers.get("x-forwarded-host"),
            }
        )

    app = Starlette(routes=[Route("/", echo)])
    return TestClient(HostGuard(app, **guard))


def test_a_configured_proxy_is_believed_within_the_allowed_hosts() -> None:
    proxy = _echo_app(allowed_hosts=["testserver", "labels.example.com"], proxies="testclient")
    forwarded = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "labels.example.com",
    }
    assert proxy.get("/", headers=forwarded).json() == {
        "scheme": "https",
        "client": "203.0.113.7",
        "forwarded_host": "labels.example.com",
    }
    r = proxy.get("/", headers={**forwarded, "X-Forwarded-Host": "labels.example.com, evil.test"})
    assert r.status_code == 400 and "evil.test" in r.json()["detail"]


def test_a_client_that_is_no_configured_proxy_is_not_believed() -> None:
    direct = _echo_app(allowed_hosts=["testserver"], proxies="10.0.0.1, 10.1.0.0/16")
    forged = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.test",
    }
    assert direct.get("/", headers=forged).json() == {
        "scheme": "http",
        "client": "testclient",
        "forwarded_host": None,
    }


# ---------- the host check, pure ----------


@pytest.mark.parametrize(
    "host,allowed,expected",
    [
        ("localhost:7860", ["localhost"], True),
        ("LOCALHOST.", ["localhost"], True),
        ("[::1]:7860", ["::1"], True),
        ("[::1]", ["[::1]"], True),
        ("a.example.com", ["*.example.com"], True),
        ("example.com", ["*.example.com"], False),
        ("evilexample.com", ["*.example.com"], False),
        ("evil.test", ["localhost", "127.0.0.1"], False),
        ("anything", ["*"], True),
        ("", ["localhost"], False),
    ],
)
def test_host_allowed(host: str, allowed: list[str], expected: bool) -> None:
    from core.origins import host_allowed

    assert host_allowed(host, allowed) is expected


def test_allowed_hosts_default_to_the_local_names_and_the_configured_host(monkeypatch) -> None:
    from pydantic import ValidationError

    from core.config import Settings

    monkeypatch.delenv("PANELBEATER_ALLOWED_HOSTS", raising=False)
    monkeypatch.delenv("PANELBEATER_HOST", raising=False)
    assert Settings().host_names == ["localhost", "127.0.0.1", "::1"]
    assert Settings(host="labels.lan").host_names[-1] == "labels.lan"
    assert "0.0.0.0" not in Settings(host="0.0.0.0").host_names
    monkeypatch.setenv("PANELBEATER_ALLOWED_HOSTS", "labels.example.com, *.lan")
    assert Settings().host_names == ["labels.example.com", "*.lan", "127.0.0.1"]
    with pytest.raises(ValidationError, match="PANELBEATER_ALLOWED_HOSTS"):
        Settings(allowed_hosts="https://labels.example.com/")


# ---------- cross-origin reads ----------


@pytest.mark.parametrize(
    "headers",
    [
        {**OWN, "Origin": OTHER_PORT},  # Gradio lets any localhost port read a localhost app
        {"Origin": "https://evil.test"},  # and any origin read an app on another name
    ],
)
def test_no_other_origin_reads_an_export_with_the_session(world, headers) -> None:
    path = _export(world)
    client, _ = _signed_in(world, "lead")
    r = client.get(f"/ui/gradio_api/file={path}", headers=headers)
    assert r.status_code == 200  # the browser, not the server, withholds it from the page
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-credentials" not in r.headers
    for path in ("/ui/session", "/ui/gradio_api/upload"):
        preflight = client.options(
            path,
            headers={
                **headers,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers, path
        assert "access-control-allow-credentials" not in preflight.headers, path


# ---------- session fixation and changes from other origins ----------


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-site", "Origin": OTHER_PORT, **OWN},
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.test"},
        {"Origin": OTHER_PORT, **OWN},  # a browser without Sec-Fetch-Site
        {"Origin": "https://testserver"},  # another scheme is another origin
        {"Origin": "null"},
    ],
)
def test_a_cross_origin_request_never_replaces_or_ends_the_session(world, headers) -> None:
    from annotator.session import COOKIE

    client, lead = _signed_in(world, "lead")
    attacker = world.token("annotator")
    r = client.post("/ui/session", headers={**headers, "Authorization": f"Bearer {attacker}"})
    assert r.status_code == 403 and "another site" in r.json()["detail"]
    assert "set-cookie" not in r.headers and client.cookies.get(COOKIE) == lead
    r = client.delete("/ui/session", headers=headers)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    # nor does it sign in, upload or run an event in the user's session
    for path in ("/ui/gradio_api/queue/join", "/ui/gradio_api/upload"):
        assert client.post(path, headers=headers, json={}).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a script, not a browser
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
        {"Origin": "http://localhost:7860", **OWN},
        {"Origin": "http://testserver"},
    ],
)
def test_the_pages_own_requests_still_start_and_end_a_session(world, headers) -> None:
    client = world.client
    client.cookies.clear()
    token = world.token("annotator")
    r = client.post("/ui/session", headers={**headers, "Authorization": f"Bearer {token}"})
    assert r.status_code == 204, r.text
    assert client.delete("/ui/session", headers=headers).status_code == 204


# ---------- the same-origin check, pure ----------


@pytest.mark.parametrize(
    "headers,scheme,expected",
    [
        ({}, "http", False),
        ({"sec-fetch-site": "same-origin", "origin": "http://x"}, "http", False),
        ({"sec-fetch-site": "none"}, "http", False),
        ({"sec-fetch-site": "same-site"}, "http", True),
        ({"sec-fetch-site": "cross-site"}, "http", True),
        ({"origin": "http://localhost:7860", "host": "localhost:7860"}, "http", False),
        ({"origin": "http://localhost:7861", "host": "localhost:7860"}, "http", True),
        ({"origin": "https://labels.example.com", "host": "labels.example.com"}, "https", False),
        (
            {"origin": "https://labels.example.com", "host": "labels.example.com:443"},
            "https",
            False,
        ),
        ({"origin": "http://labels.example.com", "host": "labels.example.com"}, "https", True),
        ({"origin": "http://[::1]:7860", "host": "[::1]:7860"}, "http", False),
        ({"origin": "null", "host": "localhost"}, "http", True),
    ],
)
def test_is_cross_origin(headers: dict[str, str], scheme: str, expected: bool) -> None:
    from core.origins import is_cross_origin

    assert is_cross_origin(headers, scheme=scheme) is expected


# ---------- export links ----------


def test_an_export_link_needs_the_export_permission(world) -> None:
    path = _export(world)
    client, _ = _signed_in(world, "annotator")
    for link in (f"/ui/gradio_api/file={path}", f"/ui/gradio_api/file/{path}"):
        r = client.get(link)
        assert r.status_code == 403 and "may not download exports" in r.json()["detail"], link
        assert client.head(link).status_code == 403
    # nor by a path relative to the server's working directory
    relative = quote(os.path.relpath(path), safe="")  # unnormalised: "../../tmp/..."
    assert client.get(f"/ui/gradio_api/file={relative}").status_code == 403
    lead, _ = _signed_in(world, "lead")
    r = lead.get(f"/ui/gradio_api/file={path}")
    assert r.status_code == 200 and r.content == path.read_bytes()


def test_an_export_link_needs_membership_of_its_project(world) -> None:
    from annotator.export_links import export_dir
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project

    with session_scope() as session:
        other = get_or_create_project(session, "another-project").id
    theirs = Path(export_dir(other)) / "0123" / "another-project-coco.json"
    theirs.parent.mkdir(parents=True)
    shutil.copy(_export(world), theirs)
    client, _ = _signed_in(world, "lead")
    r = client.get(f"/ui/gradio_api/file={theirs}")
    assert r.status_code == 403 and "not a member of project 'another-project'" in r.text
    stray = Path(export_dir(0)).parent / "loose.json"
    stray.write_text("{}")
    assert client.get(f"/ui/gradio_api/file={stray}").status_code == 403


def test_an_annotators_own_upload_is_still_served_to_them(world) -> None:
    client, _ = _signed_in(world, "annotator")
    r = client.post("/ui/gradio_api/upload", files={"files": ("n.txt", b"mine", "text/plain")})
    (path,) = r.json()
    assert client.get(f"/ui/gradio_api/file={path}").content == b"mine"
