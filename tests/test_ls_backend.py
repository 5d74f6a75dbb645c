"""The Label Studio ML backend without Label Studio: who may call it, the config's labels,
regions in percent (brush RLE or outer rings for holes and parts), the task-count limit, the
time budget, the interactive prompt, task images fetched by sha256, webhooks and the round
rule. Task images come from a small server that asks for the API key as Label Studio does."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi import FastAPI, Header, HTTPException, Response
from fastapi.testclient import TestClient
from ls_helpers import basic_auth, serve_in_thread

from core.config import get_settings
from core.geometry import Polygon, Shape, mask_iou, shape_to_mask
from core.instances import Instances
from core.records import LabelResolver, ParseReport
from core.taxonomy import default_taxonomy
from db.models import Role
from exports.label_studio import brush_rle_to_mask, parse_results

TAX = default_taxonomy()
KEY = "image-server-key"
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="polygon" toName="image">
    <Label value="dent"/><Label value="Front left door"/><Label value="hood"/>
  </PolygonLabels>
  {brush}
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="dent"/></KeyPointLabels>
</View>"""
BRUSH = '<BrushLabels name="brush" toName="image"><Label value="dent"/></BrushLabels>'


def _png(h: int, w: int, seed: int = 0) -> bytes:
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 220
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def images_server():
    """Serves ``/data/upload/<name>`` from ``files`` to ``Token KEY`` only; counts reads."""
    files: dict[str, bytes] = {}
    reads: list[str] = []
    app = FastAPI()

    @app.get("/data/upload/{name}")
    def upload(name: str, authorization: str = Header(default="")) -> Response:
        if authorization != f"Token {KEY}":
            raise HTTPException(401)
        if name not in files:
            raise HTTPException(404)
        reads.append(name)
        return Response(files[name], media_type="image/png")

    with serve_in_thread(app) as url:
        yield url, files, reads


@pytest.fixture
def ls(store, images_server, monkeypatch):
    """The backend's settings pointed at the image server, and the users: a member annotator,
    a lead, and a user of another project."""
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import create_user

    url, files, reads = images_server
    files.clear()
    reads.clear()
    for k, v in {"label_studio_url": url, "label_studio_api_key": KEY, "device": "cpu"}.items():
        monkeypatch.setattr(get_settings(), k, v)
    with session_scope() as s:
        get_or_create_project(s)
        get_or_create_project(s, "other")
        create_user(s, username="ann", password="ann-password", role=Role.annotator)
        create_user(s, username="lea", password="lea-password", role=Role.lead)
        create_user(s, username="out", password="out-password", role=Role.lead, projects=["other"])
    return files, reads


@pytest.fixture
def client(ls):
    from api.ls_backend import create_ls_backend

    return TestClient(create_ls_backend())


ANN = {"Authorization": basic_auth("ann", "ann-password")}


def _setup_body(config: str, extra: dict | None = None) -> dict:
    return {"project": "3.1700000000", "schema": config, "extra_params": extra}


# -- who may call ---------------------------------------------------------------------


def test_health_is_open_and_everything_else_needs_a_member_of_the_project(client) -> None:
    from db.session import session_scope
    from services.accounts.users import get_user, issue_token

    assert client.get("/health").json() == {"status": "UP", "model_class": "Panelbeater"}
    body = _setup_body(CONFIG.format(brush=""))
    refused = {
        "no header": {},
        "wrong password": {"Authorization": basic_auth("ann", "wrong-password")},
        "unknown user": {"Authorization": basic_auth("nobody", "ann-password")},
        "not a member": {"Authorization": basic_auth("out", "out-password")},
        "not base64": {"Authorization": "Basic %%%"},
        "a made-up token": {"Authorization": "Bearer not-a-token"},
        "another scheme": {"Authorization": "Token ann-password"},
    }
    for why, headers in refused.items():
        r = client.post("/setup", json=body, headers=headers)
        assert r.status_code == 401, why
        assert r.headers["www-authenticate"].startswith("Basic"), why
    assert client.post("/predict", json={}, headers={}).status_code == 401
    assert client.post("/webhook", json={"action": "START_TRAINING"}).status_code == 401
    ok = client.post("/setup", json=body, headers=ANN)
    assert ok.status_code == 200 and ok.json()["model_version"].startswith("panelbeater (no ")
    with session_scope() as s:
        token = issue_token(s, get_user(s, "ann"))
    bearer = client.post("/setup", json=body, headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200


def test_a_changed_password_is_refused_at_once_despite_the_cache(client) -> None:
    from db.session import session_scope
    from services.accounts.users import set_password

    body = _setup_body(CONFIG.format(brush=""))
    assert client.post("/setup", json=body, headers=ANN).status_code == 200
    with session_scope() as s:
        set_password(s, username="ann", password="new-ann-password")
    assert client.post("/setup", json=body, headers=ANN).status_code == 401
    fresh = {"Authorization": basic_auth("ann", "new-ann-password")}
    assert client.post("/setup", json=body, headers=fresh).status_code == 200


# -- the config's labels ------------------------------------------------------------------


def test_setup_names_every_label_that_maps_to_no_class_and_takes_a_map(client) -> None:
    config = CONFIG.format(brush="").replace(
        '<Label value="hood"/>', '<Label value="Sparkle"/><Label value="Wobble"/>'
    )
    r = client.post("/setup", json=_setup_body(config), headers=ANN)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "'Sparkle'" in detail and "'Wobble'" in detail and "'dent'" not in detail
    assert "label_map" in detail
    mapped = {"label_map": {"Sparkle": "scratch", "Wobble": "dent"}}
    assert client.post("/setup", json=_setup_body(config, mapped), headers=ANN).status_code == 200
    wrong = {"label_map": {"Sparkle": "glitter"}}
    r = client.post("/setup", json=_setup_body(config, wrong), headers=ANN)
    assert r.status_code == 422 and "extra_params.label_map" in r.json()["detail"]
    r = client.post(
        "/setup", json=_setup_body("<View><Text name='t' value='$t'/></View>"), headers=ANN
    )
    assert r.status_code == 422 and "no Image tag" in r.json()["detail"]


def test_labels_map_by_name_loosely_and_through_the_map() -> None:
    from services.integrations.ls_config import read_config

    m = read_config(CONFIG.format(brush=BRUSH), TAX, {"hood": "scratch"})
    assert m.polygon.class_of == {
        "dent": TAX.by_name("dent").id,
        "Front left door": TAX.by_name("front_left_door").id,
        "hood": TAX.by_name("scratch").id,
    }
    assert m.brush.name == "brush" and m.image_key == "image" and "KeyPointLabels" in m.prompts


# -- regions in percent ---------------------------------------------------------------


def _mapping(brush: bool):
    from services.integrations.ls_config import read_config

    return read_config(CONFIG.format(brush=BRUSH if brush else ""), TAX, {})


@pytest.mark.parametrize("size", [(7, 5), (768, 1024), (1000, 333)])
def test_polygons_survive_the_percent_round_trip(size) -> None:
    from services.integrations.ls_regions import instances_to_regions

    h, w = size
    rng = np.random.default_rng(h)
    rings = [rng.uniform(0, 1, (6, 2)) * [w, h] for _ in range(4)]
    inst = Instances(
        [Shape.from_ring(r) for r in rings],
        [TAX.by_name(n).id for n in ("dent", "front_left_door", "hood", "dent")],
        scores=[0.9, 0.8, 0.7, 0.6],
    )
    regions = instances_to_regions(inst, _mapping(False), w, h, model_versions=["m-v1"] * 4)
    assert [r["type"] for r in regions] == ["polygonlabels"] * 4
    assert [r["score"] for r in regions] == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert all(r["model_version"] == "m-v1" and "m-v1" in r["meta"]["text"][0] for r in regions)
    back = parse_results(
        regions,
        w,
        h,
        LabelResolver(TAX, {"Front left door": "front_left_door"}),
        ParseReport(),
        "t",
    )
    assert back.class_ids.tolist() == inst.class_ids.tolist()
    for a, b in zip(inst.shapes, back.shapes, strict=True):
        np.testing.assert_allclose(a.polygons[0].exterior, b.polygons[0].exterior, atol=1e-9)
        if min(h, w) > 100:
            assert mask_iou(shape_to_mask(a, h, w), shape_to_mask(b, h, w)) >= 0.99


def _holey_two_parts() -> Shape:
    outer = np.array([[1, 1], [7, 1], [7, 7], [1, 7]], dtype=float)
    hole = np.array([[3, 3], [5, 3], [5, 5], [3, 5]], dtype=float)
    other = np.array([[9, 2], [11, 2], [11, 6], [9, 6]], dtype=float)
    return Shape((Polygon(outer, (hole,)), Polygon(other)))


def test_holes_and_parts_go_as_a_brush_mask_when_the_config_has_brushlabels() -> None:
    from label_studio_sdk.label_interface import LabelInterface

    from services.integrations.ls_regions import instances_to_regions

    shape = _holey_two_parts()
    inst = Instances([shape], [TAX.by_name("dent").id], scores=[0.5])
    (region,) = instances_to_regions(inst, _mapping(True), 12, 9, model_versions=["v"])
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["dent"]
    mask = brush_rle_to_mask(region["value"]["rle"], 9, 12)
    assert (mask == shape_to_mask(shape, 9, 12)).all() and not mask[4, 4]
    assert "brush mask" in " ".join(region["meta"]["text"])
    li = LabelInterface(CONFIG.format(brush=BRUSH))
    assert li.validate_prediction({"result": [region]}, return_errors=True) in ([], True)


def test_without_brushlabels_the_outer_rings_go_as_polygons_and_the_meta_says_so() -> None:
    from label_studio_sdk.label_interface import LabelInterface

    from services.integrations.ls_regions import instances_to_regions

    shape = _holey_two_parts()
    inst = Instances([shape], [TAX.by_name("dent").id], scores=[0.5])
    regions = instances_to_regions(inst, _mapping(False), 12, 9, model_versions=["v"])
    assert [r["type"] for r in regions] == ["polygonlabels", "polygonlabels"]
    assert len({r["id"] for r in regions}) == 2
    for r, p in zip(regions, shape.polygons, strict=True):
        np.testing.assert_allclose(
            np.asarray(r["value"]["points"]) * [12 / 100, 9 / 100], p.exterior
        )
        note = " ".join(r["meta"]["text"])
        assert "2 parts sent as 2 polygons" in note and "1 hole(s) left out" in note
    li = LabelInterface(CONFIG.format(brush=""))
    assert li.validate_prediction({"result": regions}, return_errors=True) in ([], True)


def test_a_class_the_config_does_not_label_is_left_out() -> None:
    from services.integrations.ls_regions import instances_to_regions

    inst = Instances([Shape.from_box(1, 1, 4, 4)], [TAX.by_name("rear_bumper").id], scores=[0.9])
    assert instances_to_regions(inst, _mapping(True), 10, 10, model_versions=["v"]) == []


# -- predict ----------------------------------------------------------------------------


def _task(files: dict, name: str, data: bytes, task_id: int = 1) -> dict:
    files[name] = data
    return {"id": task_id, "data": {"image": f"/data/upload/{name}"}}


def test_too_many_tasks_are_refused_naming_the_field_and_the_setting(
    client, ls, monkeypatch
) -> None:
    monkeypatch.setattr(get_settings(), "ls_backend_max_tasks", 2)
    files, reads = ls
    tasks = [_task(files, f"p{i}.png", _png(8, 8), i) for i in range(3)]
    body = {"tasks": tasks, "label_config": CONFIG.format(brush=""), "project": "3.1"}
    r = client.post("/predict", json=body, headers=ANN)
    assert r.status_code == 413
    assert (
        r.json()["detail"].startswith("tasks: 3 tasks")
        and "PANELBEATER_LS_BACKEND_MAX_TASKS" in r.json()["detail"]
    )
    assert reads == []


@pytest.fixture(scope="module")
def part_seg_file(tmp_path_factory):
    from ls_helpers import random_part_seg

    return random_part_seg(tmp_path_factory.mktemp("ps") / "part_seg.pt")


def _promote(part_seg_file, monkeypatch) -> None:
    from db.session import session_scope
    from services.training.registry import register_version

    monkeypatch.setattr(get_settings(), "pre_annotate_minimum", {"part_seg": 0.0})
    copy = get_settings().data_dir / "ps.pt"
    copy.write_bytes(part_seg_file.read_bytes())
    with session_scope() as s:
        register_version(s, stage="part_seg", artifact_path=copy, promote=True)


def test_a_long_batch_answers_with_what_is_done_and_says_so(ls, part_seg_file, monkeypatch) -> None:
    """With a clock where each task takes 50 s, the second would end past the 80 s budget:
    the answer holds the first task's prediction and marks the other two unfinished."""
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.integrations import label_studio_backend as backend
    from services.integrations.ls_images import ImageFetcher

    _promote(part_seg_file, monkeypatch)
    files, _ = ls
    tasks = [_task(files, f"q{i}.png", _png(64, 80, i), i) for i in range(3)]
    ticks = iter(range(0, 10_000, 50))
    with session_scope() as s:
        answer = backend.pre_annotate(
            s,
            get_or_create_project(s),
            tasks,
            _mapping(False),
            ImageFetcher(get_settings()),
            clock=lambda: float(next(ticks)),
        )
    results = answer["results"]
    assert len(results) == 3 and answer["partial"] is True and answer["done"] == 1
    assert results[0]["model_version"] == "part_seg-v1" and results[0]["result"]
    assert all(
        r["model_version"] == "part_seg-v1 (unfinished)" and r["result"] == [] for r in results[1:]
    )
    assert (
        "1 of 3 tasks" in answer["message"]
        and "PANELBEATER_LS_BACKEND_TIME_BUDGET_S" in answer["message"]
    )


def test_a_task_whose_image_fails_is_marked_and_all_failing_is_an_error(
    client, ls, part_seg_file, monkeypatch
) -> None:
    _promote(part_seg_file, monkeypatch)
    files, _ = ls
    good = _task(files, "good.png", _png(40, 40), 1)
    missing = {"id": 2, "data": {"image": "/data/upload/missing.png"}}
    body = {"tasks": [good, missing], "label_config": CONFIG.format(brush=""), "project": "3.1"}
    answer = client.post("/predict", json=body, headers=ANN).json()
    assert [r["model_version"] for r in answer["results"]] == [
        "part_seg-v1",
        "part_seg-v1 (failed)",
    ]
    assert "answered 404" in answer["errors"][0] and "tasks[1] (task 2)" in answer["errors"][0]
    r = client.post("/predict", json={**body, "tasks": [missing]}, headers=ANN)
    assert r.status_code == 422 and "answered 404" in r.json()["detail"]


def test_a_keypoint_prompt_gets_the_assistance_polygon(client, ls) -> None:
    files, _ = ls
    task = _task(files, "click.png", _png(60, 80), 5)
    point = {
        "type": "keypointlabels",
        "original_width": 80,
        "original_height": 60,
        "is_positive": True,
        "value": {"x": 50.0, "y": 50.0, "keypointlabels": ["dent"]},
    }
    body = {
        "tasks": [task],
        "label_config": CONFIG.format(brush=""),
        "project": "3.1",
        "params": {"context": {"result": [point]}},
    }
    answer = client.post("/predict", json=body, headers=ANN).json()
    (result,) = answer["results"]
    (region,) = result["result"]
    assert region["type"] == "polygonlabels" and region["value"]["polygonlabels"] == ["dent"]
    assert result["model_version"].startswith("assist:")
    ring = np.asarray(region["value"]["points"]) * [0.8, 0.6]
    assert Shape.from_ring(ring).to_mask(60, 80)[30, 40]
    bad = {**point, "value": {**point["value"], "x": "left"}}
    r = client.post(
        "/predict", json={**body, "params": {"context": {"result": [bad]}}}, headers=ANN
    )
    assert r.status_code == 422 and "params.context.result[0].value.x" in r.json()["detail"]


# -- task images ---------------------------------------------------------------------


def test_images_come_from_label_studio_only_within_the_limit_and_once(ls, monkeypatch) -> None:
    import hashlib

    from services.integrations.ls_images import ImageFetcher, ImageFetchError

    files, reads = ls
    data = _png(30, 30)
    files["a.png"] = data
    fetcher = ImageFetcher(get_settings())
    first = fetcher.fetch("/data/upload/a.png", where="tasks[0].data.image")
    assert first.sha256 == hashlib.sha256(data).hexdigest() and not first.cached
    again = fetcher.fetch(f"{get_settings().label_studio_url}/data/upload/a.png", where="t")
    assert again.cached and again.data == data and reads == ["a.png"]
    # a task carrying the sha256 of a kept image reads the disk, whatever its URL
    by_sha = fetcher.fetch("/data/upload/renamed.png", where="t", sha256=first.sha256)
    assert by_sha.cached and reads == ["a.png"]
    with pytest.raises(
        ImageFetchError, match=r"tasks\[0\].data.image: the image URL .* not on Label Studio"
    ):
        fetcher.fetch("http://elsewhere.example/x.png", where="tasks[0].data.image")
    monkeypatch.setattr(get_settings(), "ls_backend_max_image_bytes", 100)
    files["big.png"] = _png(40, 40, 1)
    with pytest.raises(ImageFetchError, match="PANELBEATER_LS_BACKEND_MAX_IMAGE_BYTES"):
        ImageFetcher(get_settings()).fetch("/data/upload/big.png", where="t")


# -- webhooks and the round rule ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "JSON object with an 'action'"),
        ({"action": "ANNOTATION_CREATED", "project": 3}, "project must be"),
        ({"action": "ANNOTATION_CREATED", "project": {"id": 3}, "task": {}}, "task.id"),
        ({"action": "START_TRAINING", "project": {"id": "x"}}, "project.id"),
    ],
)
def test_a_malformed_webhook_is_refused_naming_the_field(client, body, field) -> None:
    r = client.post("/webhook", json=body, headers=ANN)
    assert r.status_code == 422 and field in r.json()["detail"]


def test_other_webhook_events_are_answered_and_ignored(client) -> None:
    r = client.post("/webhook", json={"action": "PROJECT_UPDATED"}, headers=ANN)
    assert r.status_code == 201 and r.json()["status"] == "ignored"


def test_the_round_rule(ls, monkeypatch) -> None:
    from sqlmodel import select

    from db.models import Image, Job, JobStatus
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import get_user
    from services.data_io.imports import import_uploads
    from services.integrations.ls_pull import round_due

    monkeypatch.setattr(get_settings(), "ls_backend_round_every", 2)
    with session_scope() as s:
        project = get_or_create_project(s)
        import_uploads(
            s, project, [(f"r{i}.png", _png(20, 20, i)) for i in range(3)], status="labelled"
        )
        for im in s.exec(select(Image)).all():
            im.split = "train"
            s.add(im)
    with session_scope() as s:
        project = get_or_create_project(s)
        lead, ann = get_user(s, "lea"), get_user(s, "ann")
        assert round_due(s, project, ann)[0] is False
        assert "may not retrain" in round_due(s, project, ann)[1]
        due, why = round_due(s, project, lead)
        assert due and "3 labelled training photos" in why
        s.add(
            Job(
                project_id=project.id,
                kind="round",
                status=JobStatus.completed,
                result={"labelled": 2},
            )
        )
        s.flush()
        due, why = round_due(s, project, lead)
        assert not due and "1 more labelled training photo(s)" in why and "asks for 2" in why
        s.add(Job(project_id=project.id, kind="round", status=JobStatus.queued))
        s.flush()
        monkeypatch.setattr(get_settings(), "ls_backend_round_every", 1)
        due, why = round_due(s, project, lead)
        assert not due and "is queued" in why
        monkeypatch.setattr(get_settings(), "ls_backend_round_every", 0)
        assert "start no round" in round_due(s, project, lead)[1]
