"""Predictions made elsewhere, imported as pending pre-annotations of an external model
version: COCO results, Label Studio predictions and Ultralytics prediction labels, on tiny
synthetic photos and on the real COCO car-damage set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import requires_datasets
from PIL import Image as PILImage
from sqlmodel import select
from typer.testing import CliRunner

from core.records import UnknownLabelsError
from db.models import Image, ImagePrediction, ModelVersion, Prediction
from db.session import session_scope
from services.accounts.projects import get_or_create_project
from services.data_io.imports import import_folder
from services.data_io.prediction_imports import import_predictions
from services.errors import Invalid
from services.labelling.readers import image_detail
from services.training.registry import EXTERNAL_STAGE, promote, verified_artifact

W, H = 40, 30


@pytest.fixture
def photos(store, tmp_path: Path) -> Path:
    """Three photos (a.jpg, b.png, c.jpg; different bytes) imported into the project."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(("a.jpg", "b.png", "c.jpg")):
        PILImage.new("RGB", (W, H), (40 * i, 90, 200 - 40 * i)).save(folder / name)
    with session_scope() as s:
        import_folder(s, get_or_create_project(s), folder)
    return folder


def run(kind: str, path: Path, name: str = "detectron-v7", **kw):
    with session_scope() as s:
        return import_predictions(s, get_or_create_project(s), kind, path, model_name=name, **kw)


def stored(name: str = "detectron-v7") -> dict[str, list[tuple[str, float, str]]]:
    """Photo file name -> [(class name, score, state)] of the version's predictions."""
    with session_scope() as s:
        project = get_or_create_project(s)
        from services.accounts.projects import project_taxonomy

        tax = project_taxonomy(project)
        mv = s.exec(select(ModelVersion).where(ModelVersion.name == name)).one()
        rows = s.exec(
            select(Prediction, Image.file_name)
            .join(Image, Image.id == Prediction.image_id)
            .where(Prediction.model_version_id == mv.id)
            .order_by(Prediction.id)
        ).all()
        out: dict[str, list[tuple[str, float, str]]] = {}
        for p, fname in rows:
            out.setdefault(fname, []).append(
                (tax.by_id(p.class_id).name, round(p.score, 4), p.state.value)
            )
        return out


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def assert_external(name: str = "detectron-v7", photos_done: int = 2) -> None:
    with session_scope() as s:
        mv = s.exec(select(ModelVersion).where(ModelVersion.name == name)).one()
        assert (mv.stage, mv.path, mv.sha256, mv.promoted) == (EXTERNAL_STAGE, "", "", False)
        marks = s.exec(
            select(ImagePrediction).where(ImagePrediction.model_version_id == mv.id)
        ).all()
        assert len(marks) == photos_done


# -- COCO results ---------------------------------------------------------------------

IMAGES_JSON = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "width": W, "height": H},
        {"id": 2, "file_name": "b.png", "width": W, "height": H},
        {"id": 3, "file_name": "gone.jpg", "width": W, "height": H},
    ],
    "categories": [{"id": 1, "name": "dent"}, {"id": 2, "name": "bumper"}],
}
MAP = {"dent": "damage", "bumper": "front_bumper"}
RLE_MASK = np.zeros((H, W), dtype=bool)
RLE_MASK[5:15, 10:30] = True


def coco_results() -> list[dict]:
    from exports.coco import mask_to_rle

    return [
        {"image_id": 1, "category_id": 1, "segmentation": [[2, 2, 20, 2, 20, 12, 2, 12]],
         "score": 0.91},
        {"image_id": 1, "category_id": 2, "segmentation": mask_to_rle(RLE_MASK), "score": 0.4},
        {"image_id": 2, "category_id": 2, "bbox": [1, 1, 10, 8], "score": 0.75},
        {"image_id": 3, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "score": 0.5},
    ]  # fmt: skip


def test_coco_results_become_pending_predictions_once(photos, tmp_path):
    results = write_json(tmp_path / "segm.json", coco_results())
    images = write_json(tmp_path / "instances_val.json", IMAGES_JSON)
    report = run("coco", results, label_map=MAP, images_json=images)
    assert (report.images_added, report.instances_added, report.images_failed) == (2, 3, 1)
    assert any("gone.jpg" in m and "no such photo" in m for m in report.messages)
    assert stored() == {
        "a.jpg": [("damage", 0.91, "pending"), ("front_bumper", 0.4, "pending")],
        "b.png": [("front_bumper", 0.75, "pending")],
    }
    assert_external()
    with session_scope() as s:  # the RLE came back as the mask's outline, in pixels
        p = s.exec(select(Prediction).where(Prediction.score < 0.5)).one()
        xs = [x for x, _ in p.geometry[0]["exterior"]]
        ys = [y for _, y in p.geometry[0]["exterior"]]
        assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((10, 30, 5, 15), abs=1)

    again = run("coco", results, label_map=MAP, images_json=images)
    assert (again.images_added, again.instances_added, again.images_skipped) == (0, 0, 2)
    assert sum(len(v) for v in stored().values()) == 3
    with session_scope() as s:
        assert len(s.exec(select(ModelVersion)).all()) == 1


def test_coco_results_without_images_file_match_the_photo_stem(photos, tmp_path):
    results = [
        {"image_id": "a", "category_id": 7, "bbox": [2, 2, 10, 10], "score": 0.6},
        {"image_id": "c", "category_id": 7, "bbox": [3, 3, 10, 10], "score": 0.3},
    ]
    path = write_json(tmp_path / "predictions.json", results)
    with pytest.raises(UnknownLabelsError, match="'7'"):
        run("coco", path)
    report = run("coco", path, label_map={"7": "damage"})
    assert report.instances_added == 2
    assert stored() == {
        "a.jpg": [("damage", 0.6, "pending")],
        "c.jpg": [("damage", 0.3, "pending")],
    }


def test_unknown_labels_stop_the_import_and_write_nothing(photos, tmp_path):
    results = write_json(tmp_path / "segm.json", coco_results())
    images = write_json(tmp_path / "instances_val.json", IMAGES_JSON)
    with pytest.raises(UnknownLabelsError) as e:
        run("coco", results, label_map={"dent": "damage"}, images_json=images)
    assert e.value.labels == ["bumper"]
    with session_scope() as s:
        assert s.exec(select(ModelVersion)).all() == []
        assert s.exec(select(Prediction)).all() == []


def test_external_version_is_never_loaded_or_promoted(photos, tmp_path):
    images = write_json(tmp_path / "instances_val.json", IMAGES_JSON)
    run("coco", write_json(tmp_path / "r.json", coco_results()), label_map=MAP, images_json=images)
    with session_scope() as s:
        mv = s.exec(select(ModelVersion)).one()
        with pytest.raises(Invalid, match="only trained versions can be promoted"):
            promote(s, "detectron-v7")
        with pytest.raises(Invalid, match="no model file"):
            verified_artifact(mv)
    from models.registry import stage_names

    assert EXTERNAL_STAGE not in stage_names()


def test_a_trained_versions_name_is_refused(photos, tmp_path):
    with session_scope() as s:
        s.add(ModelVersion(stage="yolo_seg", version=1, name="yolo_seg-v1", path="x", sha256="y"))
    images = write_json(tmp_path / "instances_val.json", IMAGES_JSON)
    with pytest.raises(Invalid, match="belongs to the trained version"):
        run(
            "coco",
            write_json(tmp_path / "r.json", coco_results()),
            name="yolo_seg-v1",
            label_map=MAP,
            images_json=images,
        )


# -- Label Studio ---------------------------------------------------------------------


def ls_region(rid: str, label: str, score: float, pts) -> dict:
    return {
        "id": rid,
        "type": "polygonlabels",
        "from_name": "polygon",
        "to_name": "image",
        "original_width": W * 2,  # Label Studio saw the photo at another size: percent stays
        "original_height": H * 2,
        "score": score,
        "value": {"points": pts, "polygonlabels": [label]},
    }


def test_label_studio_predictions(photos, tmp_path):
    tasks = [
        {
            "id": 1,
            "data": {"image": "/data/upload/1/0a1b2c3d-a.jpg"},
            "annotations": [
                {"result": [ls_region("x", "not-a-class", 1.0, [[0, 0], [5, 0], [5, 5]])]}
            ],
            "predictions": [
                {
                    "model_version": "mmdet",
                    "result": [
                        ls_region("p0", "dent", 0.8, [[10, 10], [50, 10], [50, 50], [10, 50]]),
                        ls_region("p1", "bumper", 0.35, [[0, 60], [100, 60], [100, 100]]),
                    ],
                }
            ],
        },
        {"id": 2, "data": {"image": "/data/local-files/?d=cars/b.png"}, "annotations": []},
        {
            "id": 3,
            "data": {"image": "s3://bucket/missing.jpg"},
            "predictions": [{"result": [ls_region("q", "dent", 0.5, [[1, 1], [9, 1], [9, 9]])]}],
        },
    ]
    path = write_json(tmp_path / "ls.json", tasks)
    report = run("label-studio", path, name="mmdet-2024", label_map=MAP)
    assert (report.images_added, report.instances_added, report.images_failed) == (1, 2, 1)
    assert any("missing.jpg" in m for m in report.messages)
    assert stored("mmdet-2024") == {
        "a.jpg": [("damage", 0.8, "pending"), ("front_bumper", 0.35, "pending")]
    }
    with session_scope() as s:  # percent of the task's size -> the stored photo's pixels
        p = s.exec(select(Prediction).where(Prediction.score > 0.5)).one()
        assert p.geometry[0]["exterior"][0] == pytest.approx([W * 0.1, H * 0.1])
    assert_external("mmdet-2024", photos_done=1)
    assert run("label-studio", path, name="mmdet-2024", label_map=MAP).instances_added == 0
    with pytest.raises(UnknownLabelsError, match="bumper"):
        run("label-studio", path, name="other", label_map={"dent": "damage"})


# -- YOLO prediction labels -------------------------------------------------------------


def test_yolo_prediction_labels(photos, tmp_path):
    labels = tmp_path / "runs" / "segment" / "predict" / "labels"
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text(
        "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5 0.87\n1 0.5 0.5 0.2 0.2 0.42\n", encoding="utf-8"
    )
    (labels / "b.txt").write_text("", encoding="utf-8")  # processed, nothing found
    (labels / "zzz.txt").write_text("0 0.1 0.1 0.2 0.1 0.2 0.2 0.5\n", encoding="utf-8")
    names = tmp_path / "data.yaml"
    names.write_text("names: {0: dent, 1: bumper}\n", encoding="utf-8")

    with pytest.raises(UnknownLabelsError, match="'0'"):
        run("yolo", labels, name="yolo11-elsewhere")
    report = run("yolo", labels, name="yolo11-elsewhere", names=names, label_map=MAP)
    assert (report.images_added, report.instances_added, report.images_failed) == (2, 2, 1)
    assert any("zzz" in m and "no such photo" in m for m in report.messages)
    assert stored("yolo11-elsewhere") == {
        "a.jpg": [("damage", 0.87, "pending"), ("front_bumper", 0.42, "pending")]
    }
    with session_scope() as s:
        p = s.exec(select(Prediction).where(Prediction.score > 0.5)).one()
        assert p.geometry[0]["exterior"][2] == pytest.approx([W * 0.5, H * 0.5])
        box = s.exec(select(Prediction).where(Prediction.score < 0.5)).one()
        xs = [x for x, _ in box.geometry[0]["exterior"]]
        assert (min(xs), max(xs)) == pytest.approx((W * 0.4, W * 0.6))
    assert_external("yolo11-elsewhere", photos_done=2)  # b.png counts as processed
    again = run("yolo", labels, name="yolo11-elsewhere", names=names, label_map=MAP)
    assert (again.instances_added, again.images_skipped) == (0, 2)


def test_cli_as_predictions(photos, tmp_path, store):
    from cli.main import app

    results = write_json(tmp_path / "segm.json", coco_results())
    images = write_json(tmp_path / "instances_val.json", IMAGES_JSON)
    mapfile = write_json(tmp_path / "map.json", MAP)
    base = ["--data-dir", str(store), "import", "coco", str(results), "--map", str(mapfile)]
    no_name = CliRunner().invoke(app, [*base, "--as-predictions"])
    assert no_name.exit_code == 1 and "--model-name" in no_name.output
    wrong = CliRunner().invoke(app, [*base, "--model-name", "m"])
    assert wrong.exit_code == 1 and "only apply with --as-predictions" in wrong.output
    ok = CliRunner().invoke(
        app,
        [*base, "--as-predictions", "--model-name", "m", "--images-json", str(images)],
    )
    assert ok.exit_code == 0, ok.output
    assert "3 added on 2 photo(s)" in ok.output and "gone.jpg" in ok.output
    listing = CliRunner().invoke(app, ["--data-dir", str(store), "import", "coco", "--help"])
    assert "--as-predictions" in listing.output


# -- the real dataset ------------------------------------------------------------------


@requires_datasets
def test_real_coco_results_show_as_pending_in_the_workspace(store, datasets_dir, tmp_path):
    root = datasets_dir / "coco_car_damage" / "val"
    label_map = json.loads(
        (Path(__file__).parent / "data" / "coco_car_damage_map.json").read_text()
    )
    with session_scope() as s:
        import_folder(s, get_or_create_project(s), root)
    coco = json.loads((root / "COCO_mul_val_annos.json").read_text())
    rng = np.random.default_rng(0)
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "segmentation": a["segmentation"],
            "bbox": a["bbox"],
            "score": round(float(rng.uniform(0.05, 1.0)), 3),
        }
        for a in coco["annotations"]
    ]
    path = write_json(tmp_path / "segm.json", results)
    report = run(
        "coco",
        path,
        name="maskrcnn-R50",
        label_map=label_map,
        images_json=root / "COCO_mul_val_annos.json",
    )
    assert report.images_failed == 0 and report.instances_added == len(results) > 0, report.messages
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    expected: dict[str, list[float]] = {}
    for r in results:
        expected.setdefault(names[r["image_id"]], []).append(r["score"])
    with session_scope() as s:
        for fname, scores in expected.items():
            image = s.exec(select(Image).where(Image.file_name == fname)).one()
            preds = image_detail(s, image)["predictions"]
            assert [p["state"] for p in preds] == ["pending"] * len(scores)
            assert {p["model"] for p in preds} == {"maskrcnn-R50"}
            assert sorted(p["score"] for p in preds) == pytest.approx(sorted(scores))
            assert image.status.value == "new"  # predictions are not labels
    assert (
        run(
            "coco",
            path,
            name="maskrcnn-R50",
            label_map=label_map,
            images_json=root / "COCO_mul_val_annos.json",
        ).instances_added
        == 0
    )
