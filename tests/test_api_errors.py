"""Errors that neither leak nor lie: a value already taken answers with the field's name (422
from the service's own check, 409 from the database's constraint), never a 500; an uploaded
file's name reaches no export with a way out of its folder."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import api_client
from PIL import Image as PILImage


@pytest.fixture
def env(tmp_path: Path):
    return api_client(tmp_path / "data", n_synthetic=1)


# ---------- a value already taken ----------


def test_a_taken_plate_answers_patch_as_post_does(env) -> None:
    client, _, login = env
    lead = login("lead")
    first = client.post("/api/vehicles", json={"plate": "PB-1"}, headers=lead).json()
    second = client.post("/api/vehicles", json={"plate": "PB-2"}, headers=lead).json()
    post = client.post("/api/vehicles", json={"plate": "PB-1"}, headers=lead)
    patch = client.patch(f"/api/vehicles/{second['id']}", json={"plate": "PB-1"}, headers=lead)
    assert (post.status_code, patch.status_code) == (422, 422), patch.text
    assert patch.json() == post.json()
    assert patch.json()["detail"] == f"plate 'PB-1' already belongs to vehicle {first['id']}"
    kept = client.get(f"/api/vehicles/{second['id']}", headers=lead).json()
    assert kept["plate"] == "PB-2"


def test_a_taken_inspection_name_answers_patch_as_post_does(env) -> None:
    client, _, login = env
    lead = login("lead")
    vid = client.post("/api/vehicles", json={"plate": "PB-1"}, headers=lead).json()["id"]
    body = {"vehicle_id": vid, "kind": "pick_up"}
    client.post("/api/inspections", json={**body, "name": "a"}, headers=lead)
    other = client.post("/api/inspections", json={**body, "name": "b"}, headers=lead).json()
    post = client.post("/api/inspections", json={**body, "name": "a"}, headers=lead)
    patch = client.patch(f"/api/inspections/{other['id']}", json={"name": "a"}, headers=lead)
    assert (post.status_code, patch.status_code) == (422, 422), patch.text
    assert patch.json() == post.json()
    assert "already has an inspection named 'a'" in patch.json()["detail"]


def test_a_unique_constraint_the_service_missed_answers_409_naming_the_field(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests that both pass the service's check (a race) meet the database's
    constraint: the loser gets 409 naming the field, and the store keeps the winner only."""
    client, _, login = env
    lead = login("lead")
    assert client.post("/api/vehicles", json={"plate": "PB-1"}, headers=lead).status_code == 201
    monkeypatch.setattr("services.claims.inspections._check_unique", lambda *a: None)
    r = client.post("/api/vehicles", json={"plate": "PB-1", "make": "Fiat"}, headers=lead)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "plate" in detail and "uq_vehicle_project_plate" in detail, detail
    assert "INSERT" not in detail and "PB-1" not in detail  # no SQL, no values
    # rolled back: the session of the next request works, and nothing half-written stays
    vehicles = client.get("/api/vehicles", headers=lead).json()
    assert [(v["plate"], v["make"]) for v in vehicles] == [("PB-1", None)]


@pytest.mark.parametrize(
    "message,kind,table,columns,constraint",
    [
        (
            "UNIQUE constraint failed: vehicle.project_id, vehicle.plate",
            "unique",
            "vehicle",
            ("project_id", "plate"),
            "uq_vehicle_project_plate",
        ),
        (
            "UNIQUE constraint failed: user.username",
            "unique",
            "user",
            ("username",),
            "ix_user_username",
        ),
        (
            "NOT NULL constraint failed: vehicle.project_id",
            "not_null",
            "vehicle",
            ("project_id",),
            "",
        ),
        ("FOREIGN KEY constraint failed", "foreign_key", "", (), ""),
        (
            'duplicate key value violates unique constraint "uq_vehicle_project_plate"\n'
            "DETAIL:  Key (project_id, plate)=(1, PB-1) already exists.",
            "unique",
            "vehicle",
            ("project_id", "plate"),
            "uq_vehicle_project_plate",
        ),
        (
            'duplicate key value violates unique constraint "ix_user_username"\n'
            "DETAIL:  Key (username)=(bob) already exists.",
            "unique",
            "user",
            ("username",),
            "ix_user_username",
        ),
        (
            'null value in column "plate" of relation "vehicle" violates not-null constraint',
            "not_null",
            "vehicle",
            ("plate",),
            "",
        ),
        (
            'insert or update on table "inspection" violates foreign key constraint "fk_v"\n'
            'DETAIL:  Key (vehicle_id)=(9) is not present in table "vehicle".',
            "foreign_key",
            "inspection",
            ("vehicle_id",),
            "fk_v",
        ),
        ("disk I/O error", "other", "", (), ""),
    ],
)
def test_the_refused_constraint_is_read_from_sqlite_and_postgres_messages(
    message: str, kind: str, table: str, columns: tuple[str, ...], constraint: str
) -> None:
    from sqlalchemy.exc import IntegrityError

    from db.integrity import violation

    v = violation(IntegrityError("INSERT INTO t VALUES (?)", ("secret",), Exception(message)))
    assert (v.kind, v.table, v.columns) == (kind, table, columns)
    assert v.constraint == constraint


def test_the_conflict_sentence_names_the_field_not_the_values() -> None:
    from sqlalchemy.exc import IntegrityError

    from services.errors import Conflict

    error = IntegrityError(
        "INSERT INTO inspection (vehicle_id, name) VALUES (?, ?)",
        (3, "pick_up-2026"),
        Exception("UNIQUE constraint failed: inspection.vehicle_id, inspection.name"),
    )
    sentence = str(Conflict.from_integrity(error))
    assert sentence.startswith("another inspection already has this name (unique constraint ")
    assert "uq_inspection_vehicle_name" in sentence and "nothing was saved" in sentence
    assert "INSERT" not in sentence and "pick_up-2026" not in sentence


# ---------- file names that reach an export ----------

#: Names a client may send: Windows separators, parent and current folders, a drive, a root.
HOSTILE_NAMES = ["..\\..\\evil.jpg", "../../evil.jpg", "C:\\Users\\x\\..\\evil.jpg", "/./evil.jpg"]


def _photo(seed: int) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.full((16, 20, 3), 40 + 50 * seed, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _exported_names(client, lead: dict[str, str]) -> dict[str, list[str]]:
    """The image file names the project stores and each export format carries."""
    listed = client.get("/api/images?limit=100", headers=lead).json()["items"]
    coco = client.get("/api/export/coco", headers=lead)
    assert coco.status_code == 200, coco.text
    names = {
        "stored": [im["file_name"] for im in listed],
        "coco": [im["file_name"] for im in coco.json()["images"]],
    }
    ls = client.get("/api/export/label-studio", headers=lead)
    with zipfile.ZipFile(io.BytesIO(ls.content)) as z:
        tasks = json.loads(z.read(next(n for n in z.namelist() if n.endswith(".json"))))
    names["label-studio"] = [t["data"]["file_name"] for t in tasks]
    yolo = client.get("/api/export/yolo", headers=lead)
    with zipfile.ZipFile(io.BytesIO(yolo.content)) as z:
        names["yolo"] = [n for n in z.namelist() if not n.endswith("/")]
    return names


def test_an_uploaded_name_reaches_every_export_as_its_safe_base_name(env) -> None:
    client, _, login = env
    lead = login("lead")
    files = [("files", (n, _photo(k), "image/png")) for k, n in enumerate(HOSTILE_NAMES)]
    r = client.post("/api/images/upload", files=files, headers=lead)
    assert (r.status_code, r.json()["images_added"]) == (201, len(HOSTILE_NAMES)), r.text
    names = _exported_names(client, lead)
    assert names["stored"].count("evil.jpg") == len(HOSTILE_NAMES), names["stored"]
    assert names["coco"].count("evil.jpg") == len(HOSTILE_NAMES), names["coco"]
    assert names["label-studio"].count("evil.jpg") == len(HOSTILE_NAMES)
    images = [n for n in names["yolo"] if n.startswith("images/")]
    assert sum(n.endswith("evil.jpg") for n in images) == len(HOSTILE_NAMES), images
    for fmt, found in names.items():
        assert not any("\\" in n or ".." in n.split("/") for n in found), (fmt, found)


def test_a_label_file_naming_a_way_out_exports_the_safe_name(env) -> None:
    """A COCO file that names its photo ``..\\..\\evil.jpg`` (sent with the photo): the name
    stored, and every export, keep only what stays inside a folder."""
    client, _, login = env
    lead = login("lead")
    coco = {
        "images": [{"id": 1, "file_name": "sub\\..\\..\\evil.jpg", "width": 20, "height": 16}],
        "categories": [],
        "annotations": [],
    }
    r = client.post(
        "/api/imports",
        data={"format": "coco"},
        files=[
            ("label_file", ("labels.json", json.dumps(coco).encode(), "application/json")),
            ("images", ("evil.jpg", _photo(2), "image/png")),
        ],
        headers=lead,
    )
    assert r.status_code == 201 and r.json()["images_added"] == 1, r.text
    names = _exported_names(client, lead)
    assert "sub/evil.jpg" in names["stored"], names["stored"]
    assert "sub/evil.jpg" in names["coco"], names["coco"]
    for fmt, found in names.items():
        assert not any("\\" in n or ".." in n.split("/") for n in found), (fmt, found)


# ---------- numbers JSON cannot repeat ----------


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_number_in_any_body_answers_422_naming_the_field(env, raw) -> None:
    """Python's JSON reader takes NaN and Infinity; a field with bounds refuses them, and the
    422 that repeats the input must still encode (it answered 500 before)."""
    client, _, login = env
    lead = login("lead")
    r = client.put(
        "/api/quality/settings",
        content=f'{{"iou_threshold": {raw}}}',
        headers={**lead, "content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "iou_threshold"]
    assert err["input"] in ("nan", "inf", "-inf")
    assert client.get("/api/quality/settings", headers=lead).json()["iou_threshold"] != err["input"]
