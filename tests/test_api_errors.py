"""Errors that neither leak nor lie: a value already taken answers with the field's name (422
from the service's own check, 409 from the database's constraint), never a 500; an uploaded
file's name reaches no export with a way out of its folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import api_client


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
