"""Projects are a boundary: two projects in one database, and the server serves one of them.

An id of the other project answers 404 on every route that takes one (as an id that does not
exist would), lists, counts and exports hold only the served project, a user who is not a
member is refused with 403 and a sentence, admins may work everywhere, membership is managed
from the CLI, the REST API and the dashboard, and an existing database keeps its users working
through the upgrade (migration 0003).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from browser_helpers import PASSWORD, seed_workspace, synthetic_photo
from conftest import POSTGRES_URL, _backends, _fresh_postgres_database
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import select
from typer.testing import CliRunner

SQUARE = [{"exterior": [[10, 10], [60, 10], [60, 60], [10, 60]], "holes": []}]
OTHER = "other"


@pytest.fixture
def two(tmp_path: Path):
    """The served project ("default", seeded: 3 photos, predictions, one user per role) and
    project "other" in the same database with 2 photos, a prediction, an annotation and a job."""
    from api.router import api_router
    from core.config import reset_settings
    from db.models import Job, JobStatus, ModelVersion, Prediction
    from db.session import reset_engine, session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_folder
    from services.labelling.images import queue_ids
    from services.labelling.saves import save_annotations

    seeded = seed_workspace(tmp_path / "data", n_synthetic=3)
    photos = tmp_path / "other-photos"
    for i in range(2):
        synthetic_photo(photos / f"other_{i}.jpg", seed=50 + i)
    with session_scope() as s:
        other = get_or_create_project(s, OTHER)
        import_folder(s, other, photos)
        other_ids = queue_ids(s, other.id)
        mv = s.exec(select(ModelVersion)).first()
        pred = Prediction(
            image_id=other_ids[0],
            model_version_id=mv.id,
            class_id=26,
            group="damage",
            geometry=SQUARE,
            score=0.9,
        )
        s.add(pred)
        job = Job(kind="select", params={}, status=JobStatus.failed, project_id=other.id)
        s.add(job)
        s.flush()
        save_annotations(
            s,
            image_id=other_ids[0],
            expected_version=0,
            annotations=[{"class_id": 26, "geometry": SQUARE}],
            author="someone-else",
        )
        ids = {"images": other_ids, "prediction": pred.id, "job": job.id}
    app = FastAPI()
    app.include_router(api_router, prefix="/api")
    client = TestClient(app)

    def login(username: str, password: str = PASSWORD) -> dict[str, str]:
        r = client.post("/api/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    yield client, seeded, ids, login
    reset_engine()
    reset_settings()


def _other_state(image_id: int) -> tuple:
    from db.models import Image, Prediction
    from db.session import session_scope
    from services.labelling.readers import annotation_dicts

    with session_scope() as s:
        image = s.get(Image, image_id)
        preds = s.exec(select(Prediction).where(Prediction.image_id == image_id)).all()
        return (
            image.status,
            image.annotation_version,
            len(annotation_dicts(s, image_id)),
            sorted(p.state for p in preds),
        )


#: (method, path with {image} / {prediction} / {job}, JSON body or None)
ID_ROUTES = [
    ("get", "/api/images/{image}", None),
    ("get", "/api/images/{image}/file", None),
    ("get", "/api/images/{image}/file?max_side=64", None),
    ("put", "/api/images/{image}/annotations", {"version": 1, "annotations": []}),
    (
        "put",
        "/api/images/{image}/annotations",
        {"version": 1, "annotations": [{"class_id": 1, "geometry": SQUARE}]},
    ),
    ("post", "/api/images/{image}/status", {"status": "labelled"}),
    ("post", "/api/images/{image}/status", {"status": "rejected", "comment": "redo it"}),
    ("post", "/api/images/{image}/assist/prepare", None),
    ("post", "/api/images/{image}/assist", {"box": [96, 150, 544, 330]}),
    ("post", "/api/images/{image}/assist", {"points": [[300, 240]], "labels": [1]}),
    ("post", "/api/predictions/{prediction}/state", {"state": "rejected"}),
    ("get", "/api/jobs/{job}", None),
    ("get", "/api/jobs/{job}/log", None),
    ("delete", "/api/jobs/{job}", None),
    ("post", "/api/jobs/{job}/retry", None),
]


@pytest.mark.parametrize("role", ["lead", "admin"])
@pytest.mark.parametrize("method,path,body", ID_ROUTES, ids=[f"{m} {p}" for m, p, _ in ID_ROUTES])
def test_an_id_of_the_other_project_answers_404(two, role, method, path, body) -> None:
    client, seeded, ids, login = two
    before = _other_state(ids["images"][0])
    url = path.format(image=ids["images"][0], prediction=ids["prediction"], job=ids["job"])
    kwargs = {"json": body} if body is not None else {}
    r = getattr(client, method)(url, headers=login(seeded.users[role]), **kwargs)
    assert r.status_code == 404, (url, r.status_code, r.text[:300])
    assert str(ids["images"][0]) in r.text or "job" in r.text or "prediction" in r.text
    assert _other_state(ids["images"][0]) == before, "a refused request changed the other project"


@pytest.mark.parametrize(
    "method,path,body",
    [r for r in ID_ROUTES if "job" not in r[1] and "max_side" not in r[1]],
    ids=[f"{m} {p}" for m, p, _ in ID_ROUTES if "job" not in p and "max_side" not in p],
)
def test_the_same_routes_answer_for_the_served_project(two, method, path, body) -> None:
    client, seeded, _, login = two
    body = dict(body or {})
    if body.get("version") == 1:
        body["version"] = 0
    url = path.format(image=seeded.image_ids[0], prediction=seeded.prediction_ids[0])
    kwargs = {"json": body} if body else {}
    r = getattr(client, method)(url, headers=login(seeded.users["lead"]), **kwargs)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])


def test_lists_counts_queue_jobs_and_exports_hold_only_the_served_project(two) -> None:
    client, seeded, ids, login = two
    lead = login(seeded.users["lead"])
    listing = client.get("/api/images?limit=100", headers=lead).json()
    assert listing["total"] == 3 and {i["id"] for i in listing["items"]} == set(seeded.image_ids)
    # an id of the other project as the queue's cursor starts from the served project's head
    nxt = client.get(f"/api/queue/next?after_id={ids['images'][0]}", headers=lead).json()
    assert nxt["image"]["id"] == seeded.image_ids[0] and nxt["progress"]["total"] == 3
    stats = client.get("/api/stats", headers=lead).json()
    assert stats["stats"]["images"] == 3 and stats["stats"]["annotations"] == 0
    assert all(t["author"] != "someone-else" for t in stats["throughput"])
    coco = client.get("/api/export/coco", headers=lead)
    assert coco.status_code == 200
    names = {im["file_name"] for im in json.loads(coco.content)["images"]}
    assert len(names) == 3 and not any(n.startswith("other_") for n in names)
    yolo = client.get("/api/export/yolo", headers=lead)
    members = zipfile.ZipFile(io.BytesIO(yolo.content)).namelist()
    assert not any("other_" in m for m in members)
    jobs = client.get("/api/jobs", headers=lead).json()
    assert ids["job"] not in {j["id"] for j in jobs}
    started = client.post("/api/jobs", headers=lead, json={"kind": "select", "params": {"k": 1}})
    assert started.status_code == 201, started.text
    assert [j["id"] for j in client.get("/api/jobs", headers=lead).json()] == [started.json()["id"]]
    holdout = client.post("/api/models/holdout", headers=lead, json={"image_ids": ids["images"]})
    assert holdout.status_code == 404


def test_a_job_belongs_to_the_project_it_was_started_in(two) -> None:
    from db.models import Job, Project
    from db.session import session_scope
    from jobs.context import JobContext

    client, seeded, ids, login = two
    r = client.post("/api/retrain", headers=login(seeded.users["lead"]))
    assert r.status_code == 200, r.text
    with session_scope() as s:
        job = s.get(Job, r.json()["job_id"])
        assert s.get(Project, job.project_id).name == "default"
        other_ctx = JobContext(ids["job"], {}, logger=None)  # what the worker hands a handler
        assert other_ctx.project(s).name == OTHER


def test_a_user_who_is_not_a_member_is_refused_with_403_and_a_sentence(two) -> None:
    from db.session import session_scope
    from services.accounts.users import create_user

    client, seeded, ids, login = two
    with session_scope() as s:
        create_user(s, username="outsider", password=PASSWORD, role="lead", projects=[OTHER])
    h = login("outsider")
    for method, url in [
        ("get", "/api/images"),
        ("get", f"/api/images/{seeded.image_ids[0]}"),
        ("get", f"/api/images/{seeded.image_ids[0]}/file"),
        ("get", f"/api/images/{ids['images'][0]}"),
        ("get", "/api/queue/next"),
        ("get", "/api/stats"),
        ("get", "/api/export/coco"),
        ("get", "/api/jobs"),
        ("get", "/api/taxonomy"),
        ("post", "/api/retrain"),
    ]:
        r = getattr(client, method)(url, headers=h)
        assert r.status_code == 403, (url, r.status_code)
        detail = r.json()["detail"]
        assert "not a member of project 'default'" in detail, detail
        assert "admin1" in detail and "panelbeater user join outsider --project default" in detail
    me = client.get("/api/me", headers=h).json()
    assert me["project"] is None and me["projects"] == [OTHER]
    mine = client.get("/api/me", headers=login(seeded.users["annotator"])).json()
    assert mine["project"] == "default" and mine["projects"] == ["default"]


def test_an_admin_may_work_in_every_project(two) -> None:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project, served_project, user_projects
    from services.accounts.users import create_user

    client, seeded, _, login = two
    with session_scope() as s:
        boss = create_user(s, username="boss", password=PASSWORD, role="admin", projects=[])
        assert [p.name for p in user_projects(s, boss)] == ["default", OTHER]
        assert served_project(s, boss).name == "default"
        get_or_create_project(s, "third")
    h = login("boss")
    assert client.get("/api/images", headers=h).json()["total"] == 3
    assert client.get("/api/me", headers=h).json()["projects"] == ["default", OTHER, "third"]


def test_admins_set_projects_over_the_api(two) -> None:
    client, seeded, _, login = two
    admin = login(seeded.users["admin"])
    r = client.post(
        "/api/users",
        headers=admin,
        json={"username": "dora", "password": PASSWORD, "projects": [OTHER]},
    )
    assert r.status_code == 201, r.text
    assert client.get("/api/images", headers=login("dora")).status_code == 403
    r = client.put("/api/users/dora/projects", headers=admin, json={"projects": [OTHER, "default"]})
    assert r.status_code == 200 and r.json()["projects"] == ["default", OTHER]
    assert client.get("/api/images", headers=login("dora")).status_code == 200
    bad = client.put("/api/users/dora/projects", headers=admin, json={"projects": ["nope"]})
    assert bad.status_code == 422 and "No project named 'nope'" in bad.json()["detail"]
    assert client.get("/api/users/dora/projects", headers=admin).json()["projects"] == [
        "default",
        OTHER,
    ]
    assert client.get("/api/users/ghost/projects", headers=admin).status_code == 404
    lead = login(seeded.users["lead"])
    assert (
        client.put("/api/users/dora/projects", headers=lead, json={"projects": []}).status_code
        == 403
    )


def test_membership_from_the_cli(two) -> None:
    from cli.main import app

    client, seeded, _, login = two
    data = str(seeded.data_dir)
    runner = CliRunner()

    def cli(*args: str, password: str | None = None):
        return runner.invoke(app, ["--data-dir", data, "user", *args], input=password)

    r = cli("add", "carol", "--project", OTHER, "--password-stdin", password=PASSWORD + "\n")
    assert r.exit_code == 0 and f"member of {OTHER}" in r.output, r.output
    assert client.get("/api/images", headers=login("carol")).status_code == 403
    r = cli("join", "carol", "--project", "default")
    assert r.exit_code == 0 and f"member of default, {OTHER}" in r.output, r.output
    assert client.get("/api/images", headers=login("carol")).status_code == 200
    assert cli("projects", "carol").output.strip() == f"default, {OTHER}"
    r = cli("leave", "carol", "--project", "default")
    assert r.exit_code == 0 and client.get("/api/images", headers=login("carol")).status_code == 403
    # several --project at once; without one, the served project
    r = cli(
        "add", "dan", "--project", "default", "--project", OTHER, "--password-stdin",
        password=PASSWORD + "\n",
    )  # fmt: skip
    assert r.exit_code == 0 and f"member of default, {OTHER}" in r.output, r.output
    r = cli("add", "erin", "--password-stdin", password=PASSWORD + "\n")
    assert r.exit_code == 0 and "member of default" in r.output
    listing = cli("list").output
    assert (
        f"carol\tannotator\tactive\t{OTHER}" in listing
        and "admin1\tadmin\tactive\tall projects" in listing
    )
    # errors are sentences, and nothing is created for a typo
    r = cli("add", "fred", "--project", "defualt", "--password-stdin", password=PASSWORD + "\n")
    assert r.exit_code == 1 and "No project named 'defualt'" in r.output and "default" in r.output
    assert "fred" not in cli("list").output
    r = cli("join", "nobody", "--project", "default")
    assert r.exit_code == 1 and "No user named 'nobody'" in r.output


def test_the_dashboard_refuses_non_members_and_lets_admins_set_projects(two) -> None:
    import gradio as gr

    from annotator import app as ui
    from annotator.jobs_panel import jobs_table
    from annotator.members_panel import member_projects, members_view, set_member_projects
    from db.session import session_scope
    from services.accounts.users import create_user

    _, seeded, _, _ = two
    with session_scope() as s:
        create_user(s, username="stranger", password=PASSWORD, role="lead", projects=[OTHER])
    refused = ui.login("stranger", PASSWORD)
    assert refused[0] == "" and "not a member of project" in refused[-1]
    lead = ui.login(seeded.users["lead"], PASSWORD)[0]
    assert members_view(lead)[0]["visible"] is False  # only admins see the members area
    with pytest.raises(gr.Error):
        set_member_projects(lead, "stranger", ["default"])
    admin = ui.login(seeded.users["admin"], PASSWORD)[0]
    box, rows, users, projects = members_view(admin)
    assert box["visible"] is True and ["stranger", "lead", "active", OTHER] in rows
    assert "stranger" in users["choices"] and set(projects["choices"]) == {"default", OTHER}
    assert member_projects(admin, "stranger")["value"] == [OTHER]
    msg = set_member_projects(admin, "stranger", ["default", OTHER])
    assert "stranger" in msg and "default" in msg
    token = ui.login("stranger", PASSWORD)[0]
    assert token and "photos" in ui.dashboard(token)[0]
    # a membership ended while signed in takes effect at the next call
    set_member_projects(admin, "stranger", [OTHER])
    with pytest.raises(gr.Error, match="not a member of project 'default'"):
        ui.dashboard(token)
    assert jobs_table(token) == []
    assert ui.restore_token(token)[0] == ""


def test_get_image_in_a_project_is_not_found_for_another_one(two) -> None:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.errors import NotFound
    from services.labelling.readers import get_image

    _, seeded, ids, _ = two
    with session_scope() as s:
        served, other = get_or_create_project(s), get_or_create_project(s, OTHER)
        assert get_image(s, seeded.image_ids[0], served).id == seeded.image_ids[0]
        assert get_image(s, ids["images"][0], other).id == ids["images"][0]
        with pytest.raises(NotFound, match=f"image {ids['images'][0]} does not exist in project"):
            get_image(s, ids["images"][0], served)


# ---------- the upgrade of an existing database ----------


@pytest.fixture(params=_backends())
def store_at_0002(request, tmp_path: Path):
    """An empty store migrated only to 0002 (before projects had members), on SQLite and,
    where a server is configured, PostgreSQL; the test upgrades it with ``init_db``."""
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
        command.upgrade(cfg, "0002")
    yield get_engine()
    reset_engine()
    reset_settings()


_OLD = "'2026-01-01 00:00:00'"


def _old_rows(engine, projects: list[str], users: list[tuple[str, str]], jobs: int) -> None:
    """Rows as a database at 0002 holds them (plain SQL: today's models have more columns)."""
    from sqlalchemy import text

    from services.accounts.users import hash_password

    digest = hash_password(PASSWORD)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        for name in projects:
            conn.execute(
                text(f"INSERT INTO project (name, created_at) VALUES (:n, {_OLD})"), {"n": name}
            )
        for name, role in users:
            conn.execute(
                text(
                    'INSERT INTO "user" (username, password_hash, role, active, created_at) '
                    f"VALUES (:u, :h, :r, TRUE, {_OLD})"
                ),
                {"u": name, "h": digest, "r": role},
            )
        for _ in range(jobs):
            conn.execute(
                text(
                    "INSERT INTO job (kind, status, params, result, progress, attempts, created_at) "
                    f"VALUES ('select', 'completed', '{{}}', '{{}}', 1.0, 1, {_OLD})"
                )
            )


def test_the_upgrade_keeps_existing_users_working(store_at_0002) -> None:
    """Two projects, users and a job at 0002: after the upgrade every non-admin user is a
    member of every project and signs in and works as before."""
    from api.router import api_router
    from db.models import Job, ProjectMember
    from db.session import init_db, session_scope
    from services.accounts.projects import is_member, list_projects
    from services.accounts.users import get_user

    users = [("ann", "annotator"), ("rev", "reviewer"), ("root", "admin")]
    _old_rows(store_at_0002, ["default", "second"], users, jobs=1)
    init_db()  # what the server and every command do on start: upgrade to head
    with session_scope() as s:
        projects = list_projects(s)
        assert [p.name for p in projects] == ["default", "second"]
        for name, _ in users:
            assert all(is_member(s, get_user(s, name), p) for p in projects)
        assert len(s.exec(select(ProjectMember)).all()) == 4  # 2 non-admins x 2; admins need none
        assert s.exec(select(Job)).first().project_id is None  # two projects: which is unknown
    app = FastAPI()
    app.include_router(api_router, prefix="/api")
    client = TestClient(app)
    for name, _ in users:
        token = client.post("/api/login", json={"username": name, "password": PASSWORD})
        assert token.status_code == 200, token.text
        h = {"Authorization": f"Bearer {token.json()['token']}"}
        assert client.get("/api/images", headers=h).status_code == 200, name
        assert client.get("/api/me", headers=h).json()["projects"] == ["default", "second"]


def test_the_upgrade_gives_old_jobs_the_only_project(store_at_0002) -> None:
    from db.models import Job, Project
    from db.session import init_db, session_scope

    _old_rows(store_at_0002, ["solo"], [], jobs=2)
    init_db()
    with session_scope() as s:
        solo = s.exec(select(Project).where(Project.name == "solo")).one()
        assert [j.project_id for j in s.exec(select(Job)).all()] == [solo.id, solo.id]
