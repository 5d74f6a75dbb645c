"""The lead's dashboard data and the one export path the API and the UI share."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from browser_helpers import seed_workspace

from services.errors import NotFound

SQUARE = [{"exterior": [[10.0, 10.0], [60.0, 10.0], [60.0, 60.0], [10.0, 60.0]], "holes": []}]


@pytest.fixture
def seeded(tmp_path: Path):
    from core.config import reset_settings
    from db.session import reset_engine, session_scope
    from services.labelling.saves import save_annotations

    seeded = seed_workspace(tmp_path / "data", n_synthetic=2)
    with session_scope() as s:
        save_annotations(
            s,
            image_id=seeded.image_ids[0],
            expected_version=0,
            annotations=[{"class_id": 3, "geometry": SQUARE}],
            author="annotator1",
        )
    yield seeded
    reset_engine()
    reset_settings()


def test_dashboard_data_counts_throughput_and_models(seeded) -> None:
    from db.models import ModelVersion
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.dashboard.summary import dashboard_data

    with session_scope() as s:
        s.add(ModelVersion(stage="albert", version=2, name="albert-v2", path="-", sha256="1"))
        s.flush()
        data = dashboard_data(s, get_or_create_project(s))
    assert data["stats"]["images"] == 2 and data["stats"]["annotations"] == 1
    assert [(t["author"], t["instances"]) for t in data["throughput"]] == [("annotator1", 1)]
    assert [m["name"] for m in data["models"]] == ["albert-v2", "albert-v1"]  # newest first


@pytest.mark.parametrize(
    "fmt,name,media",
    [
        ("coco", "-coco.json", "application/json"),
        ("label-studio", "-label-studio.zip", "application/zip"),
        ("yolo", "-yolo.zip", "application/zip"),
    ],
)
def test_export_archive_writes_one_downloadable_file(seeded, tmp_path, fmt, name, media) -> None:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.exports import export_archive

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with session_scope() as s:
        project = get_or_create_project(s)
        # empty filters (a form's blank fields) are ignored, not matched literally
        out = export_archive(s, project, fmt, out_dir, split="", group=None, status="")
    assert out.path.parent == out_dir and out.path.name == project.name + name
    assert out.media_type == media
    if fmt == "coco":
        assert len(json.loads(out.path.read_text())["annotations"]) == 1
    elif fmt == "label-studio":  # the tasks with their labelling config, as Label Studio takes them
        with zipfile.ZipFile(out.path) as z:
            assert sorted(z.namelist()) == [
                "default-label-studio.README.txt",
                "default-label-studio.config.xml",
                "default-label-studio.json",
            ]
            assert len(json.loads(z.read("default-label-studio.json"))) == 2
            assert z.read("default-label-studio.config.xml").startswith(b"<View>")
    else:
        with zipfile.ZipFile(out.path) as z:
            assert any(n.endswith(".txt") for n in z.namelist())


def test_export_archive_names_the_formats_for_an_unknown_one(seeded, tmp_path) -> None:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.exports import export_archive

    with session_scope() as s, pytest.raises(NotFound, match="coco, yolo, label-studio"):
        export_archive(s, get_or_create_project(s), "pascal", tmp_path)


def test_the_weights_picker_offers_files_each_stage_can_start_from(tmp_path, monkeypatch):
    import torch
    import torchvision

    from core.config import configure, reset_settings
    from services.dashboard.summary import picked_weights, start_weights_choices
    from services.training.weights import add_weights

    configure(data_dir=tmp_path / "data")
    try:
        path = tmp_path / "r34.pth"
        torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
        add_weights(path, name="imagenet-r34")
        choices = start_weights_choices()
        assert [v for _, v in choices] == ["part_classifier=imagenet-r34"]
        assert picked_weights([choices[0][1]]) == {"part_classifier": "imagenet-r34"}
    finally:
        reset_settings()
