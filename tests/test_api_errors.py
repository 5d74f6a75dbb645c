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
