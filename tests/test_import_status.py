"""Imports that count: photos that arrive with labels become ``labelled``, photos without
stay ``new``, ``status`` overrides both, and a re-import never moves a photo back.

On the real car_parts_dsmlr training set (COCO-Annotator flavour), then a yolo_seg model
trains at once from what was imported, without anyone opening a photo.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT, write_coco_subset
from sqlmodel import select

from db.models import Image, ImageStatus

MAP_FILE = REPO_ROOT / "tests" / "data" / "dsmlr_map.json"


@pytest.fixture
def dsmlr_sub(datasets_dir: Path, tmp_path: Path) -> dict:
    """Ten dsmlr photos in one COCO file: eight with their part polygons, two whose
    annotations were left out of the file (every dsmlr photo is labelled)."""
    root = datasets_dir / "car_parts_dsmlr" / "trainingset"
    data = json.loads((root / "annotations.json").read_text())
    keep = data["images"][:10]
    return {
        "path": write_coco_subset(data, keep, tmp_path / "sub.json", labelled=keep[:8]),
        "images": root / "JPEGImages",
        "labelled": {im["file_name"] for im in keep[:8]},
        "unlabelled": {im["file_name"] for im in keep[8:]},
    }


def _import(sub: dict, **kw):
    from core.records import load_label_map
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_coco

    with session_scope() as s:
        return import_coco(
            s,
            get_or_create_project(s),
            sub["path"],
            images_dir=sub["images"],
            label_map=load_label_map(MAP_FILE),
            **kw,
        )


def _statuses() -> dict[str, ImageStatus]:
    from db.session import session_scope

    with session_scope() as s:
        return {im.file_name: im.status for im in s.exec(select(Image)).all()}


def _set_status(file_name: str, status: str, comment: str | None = None) -> None:
    from db.session import session_scope
    from services.labelling.statuses import set_status

    with session_scope() as s:
        image = s.exec(select(Image).where(Image.file_name == file_name)).one()
        set_status(s, image_id=image.id, status=status, author="reviewer1", comment=comment)


def test_labelled_photos_become_labelled_and_the_others_stay_new(store, dsmlr_sub):
    report = _import(dsmlr_sub)
    assert report.images_added == 10 and report.images_labelled == 8
    assert "8 photo(s) now labelled" in report.summary()
    statuses = _statuses()
    assert {statuses[n] for n in dsmlr_sub["labelled"]} == {ImageStatus.labelled}
    assert {statuses[n] for n in dsmlr_sub["unlabelled"]} == {ImageStatus.new}
    from db.session import session_scope

    with session_scope() as s:
        by = {im.file_name: (im.meta or {}).get("status_by") for im in s.exec(select(Image))}
    assert {by[n] for n in dsmlr_sub["labelled"]} == {"import:sub.json"}
    assert {by[n] for n in dsmlr_sub["unlabelled"]} == {None}  # no change, nothing recorded


def test_reimport_is_idempotent_and_never_moves_a_photo_back(store, dsmlr_sub):
    _import(dsmlr_sub)
    reviewed, rejected, reopened, *_ = sorted(dsmlr_sub["labelled"])
    _set_status(reviewed, "reviewed", "fine")
    _set_status(rejected, "rejected", "the bumper is the wrong class")
    _set_status(reopened, "in_progress")
    before = _statuses()

    again = _import(dsmlr_sub)
    assert (again.images_added, again.instances_added) == (0, 0)
    assert again.images_skipped == 10 and again.instances_skipped > 0
    after = _statuses()
    assert after[reviewed] == ImageStatus.reviewed
    assert after[rejected] == ImageStatus.rejected, "a re-import never moves a rejected photo"
    assert after[reopened] == ImageStatus.labelled, "a photo with labels moves forward"
    assert again.images_labelled == 1
    assert {after[n] for n in dsmlr_sub["unlabelled"]} == {ImageStatus.new}
    assert {n: s for n, s in after.items() if n != reopened} == {
        n: s for n, s in before.items() if n != reopened
    }

    # an explicit status that is lower than a photo's moves nothing back either
    third = _import(dsmlr_sub, status="new")
    assert third.images_labelled == 0 and _statuses() == after


def test_status_option_sets_every_photo_and_a_wrong_one_is_refused(store, dsmlr_sub):
    from services.errors import Invalid

    report = _import(dsmlr_sub, status="in_progress")
    assert report.images_labelled == 0
    assert set(_statuses().values()) == {ImageStatus.in_progress}
    # the default rule on a re-import moves the labelled ones forward, the others stay
    _import(dsmlr_sub)
    statuses = _statuses()
    assert {statuses[n] for n in dsmlr_sub["labelled"]} == {ImageStatus.labelled}
    assert {statuses[n] for n in dsmlr_sub["unlabelled"]} == {ImageStatus.in_progress}
    _import(dsmlr_sub, status="reviewed")
    assert set(_statuses().values()) == {ImageStatus.reviewed}
    for bad in ("rejected", "done"):
        with pytest.raises(Invalid, match="must be one of new, in_progress, labelled, reviewed"):
            _import(dsmlr_sub, status=bad)


def test_cli_import_status_option(store, dsmlr_sub):
    from typer.testing import CliRunner

    from cli.main import app

    args = ["import", "coco", str(dsmlr_sub["path"]), "--images", str(dsmlr_sub["images"])]
    args += ["--map", str(MAP_FILE)]
    runner = CliRunner()
    r = runner.invoke(app, [*args, "--status", "bogus"])
    assert r.exit_code == 1 and "status 'bogus' must be one of" in r.output
    assert "Nothing was imported" in r.output and _statuses() == {}
    r = runner.invoke(app, [*args, "--status", "labelled"])
    assert r.exit_code == 0, r.output
    assert "images 10 added" in r.output and "10 photo(s) now labelled" in r.output
    assert set(_statuses().values()) == {ImageStatus.labelled}
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "0 photo(s) now labelled" in r.output
    assert set(_statuses().values()) == {ImageStatus.labelled}, "no downgrade to new"


def test_cli_folder_import_stays_new_unless_told(store, dsmlr_sub, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in sorted(dsmlr_sub["unlabelled"]):
        shutil.copy(dsmlr_sub["images"] / name, folder / Path(name).name)
    runner = CliRunner()
    r = runner.invoke(app, ["import", "folder", str(folder)])
    assert r.exit_code == 0, r.output
    assert set(_statuses().values()) == {ImageStatus.new}
    r = runner.invoke(app, ["import", "folder", str(folder), "--status", "labelled"])
    assert r.exit_code == 0 and "2 photo(s) now labelled" in r.output
    assert set(_statuses().values()) == {ImageStatus.labelled}


def test_real_via_file_imports_labelled(store, datasets_dir, tmp_path):
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_via

    root = datasets_dir / "car_damage_v0" / "customImages" / "val"
    data = json.loads((root / "via_region_data.json").read_text())
    with_regions = {e["filename"] for e in data.values() if e.get("regions")}
    with session_scope() as s:
        report = import_via(s, get_or_create_project(s), root / "via_region_data.json")
    assert report.images_added == len(data) and report.images_labelled == len(with_regions)
    statuses = _statuses()
    assert {n for n, st in statuses.items() if st == ImageStatus.labelled} == with_regions
    assert {st for n, st in statuses.items() if n not in with_regions} <= {ImageStatus.new}


def test_yolo_seg_trains_right_after_the_import(store, dsmlr_sub):
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.training.lifecycle import train_stage

    _import(dsmlr_sub)  # nobody opens a photo in between
    with session_scope() as s:
        mv = train_stage(
            s, get_or_create_project(s), "yolo_seg", config="tiny", epochs=1, device="cpu"
        )
        assert mv is not None and mv.name == "yolo_seg-v1"
        assert Path(mv.path).exists()


# -- the API's upload -----------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path):
    from browser_helpers import api_client

    client, _, login = api_client(tmp_path / "data", n_synthetic=1)
    return client, login("lead")


def _png(value: int) -> bytes:
    import numpy as np
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.full((16, 20, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _upload(client, headers, value: int, **data):
    files = [("files", (f"p{value}.png", _png(value), "image/png"))]
    return client.post("/api/images/upload", files=files, data=data, headers=headers)


def test_upload_status_option(api):
    client, h = api

    def status_of(value: int) -> str:
        items = client.get("/api/images?limit=1000", headers=h).json()["items"]
        return next(i["status"] for i in items if i["file_name"] == f"p{value}.png")

    r = _upload(client, h, 11)
    assert r.status_code == 201, r.text
    assert status_of(11) == "new", "an upload has no labels: it stays new"
    r = _upload(client, h, 12, status="reviewed")
    assert r.status_code == 201 and r.json()["images_labelled"] == 1
    assert status_of(12) == "reviewed"
    r = _upload(client, h, 12, status="in_progress")  # the same photo again: no downgrade
    assert r.status_code == 201 and r.json()["images_skipped"] == 1
    assert status_of(12) == "reviewed"
    for bad in ("rejected", "finished"):
        r = _upload(client, h, 13, status=bad)
        assert r.status_code == 422 and "status" in r.text and bad in r.text
    items = client.get("/api/images?limit=1000", headers=h).json()["items"]
    assert "p13.png" not in {i["file_name"] for i in items}, "a refused upload adds nothing"
