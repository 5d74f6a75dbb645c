"""Imports and exports through the store, on real datasets and on bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlmodel import func, select
from typer.testing import CliRunner

from core.records import UnknownLabelsError, load_label_map
from db.models import Annotation, Image
from db.session import session_scope
from exports.errors import FormatError
from services.accounts.projects import get_or_create_project
from services.dashboard.stats import project_stats
from services.data_io import imports
from services.data_io.exports import export_coco
from services.training.records import collect_records

DSMLR_MAP = Path(__file__).parent / "data" / "dsmlr_map.json"


def counts() -> tuple[int, int]:
    with session_scope() as s:
        return (
            s.exec(select(func.count()).select_from(Image)).one(),
            s.exec(select(func.count()).select_from(Annotation)).one(),
        )


def run_import(kind, path, **kw):
    with session_scope() as s:
        return imports.IMPORTERS[kind](s, get_or_create_project(s), path, **kw)


def test_dsmlr_import_is_complete_and_idempotent(any_store, datasets_dir):
    root = datasets_dir / "car_parts_dsmlr" / "trainingset"
    label_map = load_label_map(DSMLR_MAP)
    report = run_import(
        "coco", root / "annotations.json", images_dir=root / "JPEGImages", label_map=label_map
    )
    assert report.images_added == 400 and report.images_failed == 0
    assert report.instances_added == 3073 and report.instances_failed == 0
    again = run_import(
        "coco", root / "annotations.json", images_dir=root / "JPEGImages", label_map=label_map
    )
    assert (again.images_added, again.instances_added) == (0, 0)
    assert (again.images_skipped, again.instances_skipped) == (400, 3073)
    assert counts() == (400, 3073)
    with session_scope() as s:
        stats = project_stats(s, get_or_create_project(s))
    assert stats["per_group"]["part"] == 3073 and stats["per_class"]["wheel"] > 0


def test_unknown_labels_stop_the_import_and_list_every_one(store, datasets_dir):
    root = datasets_dir / "car_parts_dsmlr" / "trainingset"
    with pytest.raises(UnknownLabelsError) as err:
        run_import("coco", root / "annotations.json", images_dir=root / "JPEGImages")
    message = str(err.value)
    for label in ("back_bumper", "back_glass", "front_left_light"):
        assert label in message
    assert "--map" in message
    assert counts() == (0, 0)


def test_leaky_duplicates_are_kept_once(store, datasets_dir):
    root = datasets_dir / "car_damage_v0" / "customImages"
    label_map = {"damage": "damage"}
    train = run_import(
        "via",
        root / "train" / "via_region_data.json",
        images_dir=root / "train",
        label_map=label_map,
    )
    val = run_import(
        "via", root / "val" / "via_region_data.json", images_dir=root / "val", label_map=label_map
    )
    assert train.images_added == 49
    assert val.images_skipped >= 3  # image80/65/78 are byte copies of train images
    with session_scope() as s:
        hashes = s.exec(select(Image.sha256)).all()
    assert len(hashes) == len(set(hashes))


def test_corrupt_image_is_reported_and_the_rest_imported(store, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        PILImage.fromarray(np.full((20, 30, 3), i * 40, np.uint8)).save(folder / f"ok{i}.jpg")
    data = (folder / "ok0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    report = run_import("folder", folder)
    assert report.images_added == 3 and report.images_failed == 1
    assert any("truncated.jpg" in m for m in report.messages)


def test_malformed_coco_changes_nothing(store, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"annotations": [], "categories": []}))
    with pytest.raises(FormatError, match="images"):
        run_import("coco", bad, images_dir=tmp_path)
    assert counts() == (0, 0)


def test_export_filters_and_cli(store, datasets_dir, tmp_path):
    root = datasets_dir / "coco_car_damage"
    label_map = {"damage": "damage", "headlamp": "left_headlight", "door": "front_left_door"}
    run_import(
        "coco",
        root / "train" / "COCO_mul_train_annos.json",
        images_dir=root / "train",
        label_map=label_map,
    )
    out = tmp_path / "out.json"
    with session_scope() as s:
        project = get_or_create_project(s)
        records = collect_records(s, project, group="part")
        n_part = sum(len(r.instances) for r in records)
        export_coco(s, project, out, group="part")
    data = json.loads(out.read_text())
    assert len(data["annotations"]) == n_part > 0
    assert {c["supercategory"] for c in data["categories"]} == {"damage", "fake", "part"}

    from cli.main import app

    result = CliRunner().invoke(app, ["--data-dir", str(store), "stats", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["annotations"] == n_part
    bad = CliRunner().invoke(
        app, ["--data-dir", str(store), "export", "coco", str(out), "--group", "bodywork"]
    )
    assert bad.exit_code == 1 and "--group 'bodywork'" in bad.output


def test_cli_import_reports_counts(tmp_path, datasets_dir):
    from cli.main import app
    from core.config import reset_settings
    from db.session import reset_engine

    data_dir = tmp_path / "cli-data"
    root = datasets_dir / "car_damage_v0" / "customImages" / "val"
    shutil.copytree(root, tmp_path / "val")
    try:
        result = CliRunner().invoke(
            app,
            [
                "--data-dir",
                str(data_dir),
                "import",
                "via",
                str(tmp_path / "val" / "via_region_data.json"),
                "--images",
                str(tmp_path / "val"),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "images 15 added" in result.output
    finally:
        reset_engine()
        reset_settings()


def test_uploads_are_stored_by_hash_and_deduplicated(store):
    import io

    buf = io.BytesIO()
    PILImage.fromarray(np.full((10, 12, 3), 7, np.uint8)).save(buf, format="PNG")
    files = [("car.png", buf.getvalue()), ("same-again.png", buf.getvalue()), ("notes.txt", b"hi")]
    with session_scope() as s:
        report = imports.import_uploads(s, get_or_create_project(s), files)
    assert (report.images_added, report.images_skipped, report.images_failed) == (1, 1, 1)
    with session_scope() as s:
        img = s.exec(select(Image)).one()
        assert Path(img.path).parent == store / "media" and (img.width, img.height) == (12, 10)


def test_attributes_survive_export_on_both_databases(any_store, tmp_path):
    from services.labelling.saves import save_annotations

    folder = tmp_path / "p"
    folder.mkdir()
    PILImage.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(folder / "a.png")
    run_import("folder", folder)
    square = [{"exterior": [[5, 5], [30, 5], [30, 30], [5, 30]]}]
    with session_scope() as s:
        image_id = s.exec(select(Image.id)).one()
        attrs = {"severity": "severe", "fake": True, "fake_note": "painted on", "occluded": False}
        save_annotations(
            s,
            image_id=image_id,
            expected_version=0,
            author="a",
            annotations=[
                {"class_name": "dent", "geometry": square, "attributes": attrs},
                {"class_name": "hood", "geometry": square},
            ],
        )
    with session_scope() as s:
        records = collect_records(s, get_or_create_project(s))
    assert records[0].instances.attributes == [attrs, {}]


@pytest.mark.parametrize("fmt", ["coco", "yolo", "label-studio"])
def test_store_round_trip_through_each_export(tmp_path, fmt):
    """import(export(x)) through the store: same images, classes and masks."""
    from conftest import configure_store

    from core.config import reset_settings
    from db.session import reset_engine
    from services.data_io import exports
    from services.labelling.saves import save_annotations

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        PILImage.fromarray(np.full((60, 80, 3), 30 + 50 * i, np.uint8)).save(folder / f"p{i}.png")
    holed = [
        {
            "exterior": [[5, 5], [45, 5], [45, 45], [5, 45]],
            "holes": [[[15, 15], [30, 15], [30, 30], [15, 30]]],
        }
    ]
    two_parts = [
        {"exterior": [[50, 5], [70, 5], [70, 20]]},
        {"exterior": [[50, 30], [75, 30], [75, 55], [50, 55]]},
    ]
    try:
        configure_store(tmp_path / "a")
        run_import("folder", folder)
        with session_scope() as s:
            for image_id in s.exec(select(Image.id)).all():
                save_annotations(
                    s,
                    image_id=image_id,
                    expected_version=0,
                    author="a",
                    annotations=[
                        {"class_name": "dent", "geometry": holed},
                        {"class_name": "hood", "geometry": two_parts},
                    ],
                )
        out = tmp_path / "out"
        with session_scope() as s:
            project = get_or_create_project(s)
            before = {r.sha256: r for r in collect_records(s, project)}
            if fmt == "coco":
                exports.export_coco(s, project, out / "c.json")
            elif fmt == "yolo":
                exports.export_yolo(s, project, out)
            else:
                exports.export_label_studio(s, project, out / "ls.json")
        configure_store(tmp_path / "b")
        if fmt == "coco":
            run_import("coco", out / "c.json", images_dir=folder)
        elif fmt == "yolo":
            run_import("yolo", out / "data.yaml")
        else:
            run_import("label-studio", out / "ls.json", images_dir=folder)
        with session_scope() as s:
            after = {r.sha256: r for r in collect_records(s, get_or_create_project(s))}
        assert set(after) == set(before)
        for sha, rec in before.items():
            got = after[sha]
            assert sorted(got.instances.class_ids.tolist()) == sorted(
                rec.instances.class_ids.tolist()
            )
            for want in rec.instances.shapes:
                m = want.to_mask(rec.height, rec.width)
                best = max(
                    (m & g.to_mask(rec.height, rec.width)).sum()
                    / (m | g.to_mask(rec.height, rec.width)).sum()
                    for g in got.instances.shapes
                )
                assert best >= 0.95, f"{fmt}: a shape came back with IoU {best:.3f}"
    finally:
        reset_engine()
        reset_settings()
