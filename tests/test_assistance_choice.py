"""The project's assistance back end chosen on the dashboard/API: applied without a restart,
refused by name when it cannot be honoured, lead/admin only, and the environment wins."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import api_client

BOX = {"box": [96, 150, 544, 330], "tolerance": 2}


@pytest.fixture
def env(tmp_path: Path):
    from services.training import assist

    assist.clear_cache()
    yield api_client(tmp_path / "data", n_synthetic=1)
    assist.clear_cache()


def _resnet_weights(tmp_path: Path):
    """A tiny state dict the weights folder files as kind resnet34 (not an assistance kind)."""
    import torch
    import torchvision

    from services.training.weights import add_weights

    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    rec, _ = add_weights(path, name="resnet")
    return rec


def test_grabcut_chosen_answers_with_grabcut_and_back(env) -> None:
    client, seeded, login = env
    lead, annotator = login("lead"), login("annotator")
    img = seeded.image_ids[0]
    before = client.get("/api/assistance", headers=annotator).json()
    assert before["choice"] == "auto" and before["source"] == "default", before
    assert {c["value"] for c in before["choices"]} >= {"auto", "grabcut"}

    r = client.put("/api/assistance", headers=lead, json={"choice": "grabcut"})
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "project" and r.json()["backend"] == "grabcut"
    assert "lead1" in r.json()["reason"]
    answer = client.post(f"/api/images/{img}/assist", headers=annotator, json=BOX).json()
    assert answer["backend"] == "grabcut" and answer["geometry"]

    # Back to auto: the cached GrabCut is not reused, the default back end answers.
    client.put("/api/assistance", headers=lead, json={"choice": "auto"})
    state = client.get("/api/assistance", headers=annotator).json()
    assert state["choice"] == "auto" and state["source"] == "default"
    answer = client.post(f"/api/images/{img}/assist", headers=annotator, json=BOX).json()
    assert answer["backend"] == state["backend"]


def test_sam_weights_chosen_without_a_restart(env, tmp_path: Path) -> None:
    import torch
    from segment_anything import sam_model_registry

    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.training import assist
    from services.training.weights import add_weights

    client, seeded, login = env
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), path)
    rec, _ = add_weights(path, name="sam-b")
    path.unlink()
    assert rec.kind == "sam" and rec.details["model_type"] == "vit_b"

    lead = login("lead")
    listed = client.get("/api/assistance", headers=lead).json()["choices"]
    assert {"label": "SAM vit_b: sam-b", "value": "sam:sam-b"} in listed
    r = client.put("/api/assistance", headers=lead, json={"choice": "sam:sam-b"})
    assert r.status_code == 200, r.text
    assert r.json()["backend"] == "sam_vit_b" and r.json()["source"] == "project"

    with session_scope() as session:
        resolved = assist.resolve_assistance(session, get_or_create_project(session))
        assert resolved.settings.sam_checkpoint == rec.path
        assistant = assist.project_assistant(session)
    assert assistant.backend == "sam_vit_b"
    # the chosen file cannot be removed from under the project
    from services.training.weights import WeightsInUse, remove_weights

    with session_scope() as session, pytest.raises(WeightsInUse, match="assistance of project"):
        remove_weights("sam-b", session=session)


def test_environment_variable_wins(env, monkeypatch) -> None:
    from core.config import configure, get_settings

    client, seeded, login = env
    lead = login("lead")
    client.put("/api/assistance", headers=lead, json={"choice": "grabcut"})
    monkeypatch.setenv("PANELBEATER_ASSIST_BACKEND", "box")
    values = get_settings().model_dump(exclude={"assist_backend"})
    try:
        configure(**values)
        state = client.get("/api/assistance", headers=lead).json()
        assert state["source"] == "env" and state["backend"] == "box", state
        assert state["env"] == {"PANELBEATER_ASSIST_BACKEND": "box"}
        assert "PANELBEATER_ASSIST_BACKEND" in state["reason"] and "grabcut" in state["reason"]
        img = seeded.image_ids[0]
        answer = client.post(f"/api/images/{img}/assist", headers=lead, json=BOX).json()
        assert answer["backend"] == "box"
    finally:
        monkeypatch.delenv("PANELBEATER_ASSIST_BACKEND")
        configure(**values)
    assert client.get("/api/assistance", headers=lead).json()["backend"] == "grabcut"


def test_bad_choices_are_refused_by_name(env, tmp_path: Path) -> None:
    client, _, login = env
    lead = login("lead")
    _resnet_weights(tmp_path)
    for choice, words in [
        ("sam:nosuch", ["nosuch", "no weights named"]),
        ("sam:resnet", ["resnet", "resnet34", "sam or mobile_sam"]),
        ("assist_net", ["no assist_net version"]),
        ("yolo", ["'yolo'", "sam:<weights name>"]),
        ("sam:", ["'sam:'"]),
    ]:
        r = client.put("/api/assistance", headers=lead, json={"choice": choice})
        assert r.status_code == 422, (choice, r.text)
        assert all(w in r.json()["detail"] for w in words), (choice, r.json())
    choices = {c["value"] for c in client.get("/api/assistance", headers=lead).json()["choices"]}
    assert "sam:resnet" not in choices and "assist_net" not in choices
    assert client.get("/api/assistance", headers=lead).json()["choice"] == "auto"


@pytest.mark.parametrize(
    "role,may_change", [("annotator", False), ("reviewer", False), ("lead", True), ("admin", True)]
)
def test_roles(env, role: str, may_change: bool) -> None:
    client, _, login = env
    h = login(role)
    assert client.get("/api/assistance", headers=h).status_code == 200
    r = client.put("/api/assistance", headers=h, json={"choice": "grabcut"})
    assert r.status_code == (200 if may_change else 403), r.text
    assert client.get("/api/assistance").status_code == 401


def test_service_refuses_a_role_without_the_permission(env) -> None:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import get_user
    from services.errors import Forbidden
    from services.training import assist

    with session_scope() as session:
        project = get_or_create_project(session)
        with pytest.raises(Forbidden, match="annotator"):
            assist.set_assistance(session, project, "grabcut", user=get_user(session, "annotator1"))
        assert assist.project_choice(project) == "auto"
