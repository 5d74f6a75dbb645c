"""Imports that take real exports as they are, through ``POST /api/imports`` and
``GET /api/export/label-studio`` with a real store: Roboflow's COCO (a parent category no
annotation uses), byte-identical photos with different labels (coco_car_damage's train
25.jpg and 48.jpg), the label map named as the upload's field, and a Label Studio download
that Label Studio takes as it is (tasks, config, image URLs it can load)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from browser_helpers import api_client
from conftest import write_coco_subset
from sqlmodel import select
from typer.testing import CliRunner

from core.config import configure, get_settings
from db.models import Annotation, Image
from db.session import session_scope

DATA = Path(__file__).parent / "data"
BILGI_MAP = (DATA / "bilgi_map.json").read_text()
PARTS_MAP = json.dumps({"headlamp": "left_headlight", "door": "front_left_door"})


@pytest.fixture
def env(tmp_path: Path):
    return api_client(tmp_path / "data", n_synthetic=1)


def post(client, headers, label: tuple[str, bytes], photos=(), **form):
    files = [("label_file", (label[0], label[1], "application/octet-stream"))]
    files += [("images", (n, b, "image/jpeg")) for n, b in photos]
    return client.post("/api/imports", headers=headers, files=files, data=form)


def instances_of(file_name: str) -> int:
    with session_scope() as s:
        image = s.exec(select(Image).where(Image.file_name == file_name)).one()
        return len(s.exec(select(Annotation).where(Annotation.image_id == image.id)).all())


@pytest.fixture
def roboflow(datasets_dir: Path, tmp_path: Path) -> dict:
    """Five labelled photos of the Bilgi set's Roboflow export, its categories as they are."""
    root = datasets_dir / "car_damage_bilgi" / "valid"
    data = json.loads((root / "_annotations.coco.json").read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    keep = [im for im in data["images"] if im["id"] in annotated][:5]
    path = write_coco_subset(data, keep, tmp_path / "_annotations.coco.json")
    ids = {im["id"] for im in keep}
    return {
        "coco": path.read_bytes(),
        "n_instances": sum(a["image_id"] in ids for a in data["annotations"]),
        "photos": [(im["file_name"], (root / im["file_name"]).read_bytes()) for im in keep],
    }


def post_roboflow(env, roboflow, **form):
    """The lead uploads the Roboflow COCO export with its photos."""
    client, _, login = env
    return post(
        client,
        login("lead"),
        ("_annotations.coco.json", roboflow["coco"]),
        roboflow["photos"],
        format="coco",
        **form,
    )


def test_roboflow_parent_category_is_ignored_with_a_line(env, roboflow) -> None:
    # the map names the 8 damage names, not the parent 'car'
    r = post_roboflow(env, roboflow, label_map=BILGI_MAP)
    assert r.status_code == 201, r.text
    rep = r.json()
    assert (rep["images_added"], rep["instances_added"]) == (5, roboflow["n_instances"])
    assert rep["instances_failed"] == rep["instances_skipped"] == 0
    assert (
        "_annotations.coco.json: category 'car' (id 0) is used by no annotation; ignored"
        in rep["messages"]
    )


def test_unknown_labels_name_the_label_map_field_not_the_cli_option(env, roboflow) -> None:
    r = post_roboflow(env, roboflow)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "label(s) are not in the taxonomy" in detail and "'cizik'" in detail
    assert "'car'" not in detail  # the unused parent needs no mapping
    assert "label map field (label_map)" in detail and "--map" not in detail
    assert "Nothing was imported." in detail
    with session_scope() as s:
        assert s.exec(select(Annotation)).all() == []


@pytest.fixture
def twins(datasets_dir: Path, tmp_path: Path) -> dict:
    """coco_car_damage train: 25.jpg and 48.jpg have the same bytes and different labels."""
    root = datasets_dir / "coco_car_damage" / "train"
    data = json.loads((root / "COCO_mul_train_annos.json").read_text())
    keep = [im for im in data["images"] if im["file_name"] in ("25.jpg", "48.jpg")]
    assert (root / "25.jpg").read_bytes() == (root / "48.jpg").read_bytes()
    path = write_coco_subset(data, keep, tmp_path / "parts.json")
    per = {
        im["file_name"]: sum(a["image_id"] == im["id"] for a in data["annotations"]) for im in keep
    }
    photos = [(n, (root / n).read_bytes()) for n in ("25.jpg", "48.jpg")]
    return {"coco": path.read_bytes(), "per": per, "photos": photos, "data": data, "keep": keep}


def test_a_duplicate_photos_other_labels_are_skipped_and_reported(env, twins) -> None:
    client, _, login = env
    lead = login("lead")
    r = post(client, lead, ("parts.json", twins["coco"]), twins["photos"], format="coco",
             label_map=PARTS_MAP)  # fmt: skip
    assert r.status_code == 201, r.text
    rep = r.json()
    assert rep["images_added"] == 1 and rep["images_skipped"] == 1
    assert rep["instances_added"] == twins["per"]["25.jpg"] == instances_of("25.jpg")
    assert rep["instances_skipped"] == twins["per"]["48.jpg"]
    (line,) = [m for m in rep["messages"] if m.startswith("48.jpg: same bytes as 25.jpg")]
    assert f"its {twins['per']['48.jpg']} instance(s) left out" in line and "merge" in line
    # importing the file again changes nothing and keeps saying why
    again = post(client, lead, ("parts.json", twins["coco"]), format="coco", label_map=PARTS_MAP)
    assert again.status_code == 201, again.text
    assert again.json()["instances_added"] == 0 and instances_of("25.jpg") == twins["per"]["25.jpg"]


def test_duplicates_merge_keeps_the_old_behaviour(env, twins) -> None:
    client, _, login = env
    r = post(client, login("lead"), ("parts.json", twins["coco"]), twins["photos"],
             format="coco", label_map=PARTS_MAP, duplicates="merge")  # fmt: skip
    assert r.status_code == 201, r.text
    both = twins["per"]["25.jpg"] + twins["per"]["48.jpg"]
    assert r.json()["instances_added"] == both == instances_of("25.jpg")
    assert "48.jpg: same bytes as 25.jpg; kept once" in r.json()["messages"]
    bad = post(client, login("lead"), ("parts.json", twins["coco"]), format="coco",
               label_map=PARTS_MAP, duplicates="keep-both")  # fmt: skip
    assert bad.status_code == 422 and "duplicates 'keep-both' must be skip" in bad.text


def test_a_duplicate_with_the_same_labels_adds_nothing_and_loses_nothing(
    env, twins, tmp_path
) -> None:
    """48.jpg carrying exactly 25.jpg's labels (the same photo listed twice) is no conflict."""
    data, keep = twins["data"], twins["keep"]
    first, second = (im for im in sorted(keep, key=lambda im: im["file_name"]))
    copies = [
        {**a, "id": 10_000 + a["id"], "image_id": second["id"]}
        for a in data["annotations"]
        if a["image_id"] == first["id"]
    ]
    same = {**data, "annotations": [a for a in data["annotations"] if a["image_id"] == first["id"]]}
    same["annotations"] += copies
    path = write_coco_subset(same, keep, tmp_path / "same.json")
    client, _, login = env
    r = post(client, login("lead"), ("same.json", path.read_bytes()), twins["photos"],
             format="coco", label_map=PARTS_MAP)  # fmt: skip
    assert r.status_code == 201, r.text
    rep = r.json()
    assert rep["instances_added"] == len(copies) == instances_of("25.jpg")
    assert rep["instances_skipped"] == len(copies)  # already on the kept photo
    assert "48.jpg: same bytes as 25.jpg; kept once" in rep["messages"]


def test_cli_duplicates_option(store, tmp_path, twins, datasets_dir) -> None:
    from cli.main import app

    mapfile = tmp_path / "map.json"
    mapfile.write_text(PARTS_MAP)
    images = datasets_dir / "coco_car_damage" / "train"
    label = tmp_path / "parts.json"
    label.write_bytes(twins["coco"])
    base = ["--data-dir", str(store), "import", "coco", str(label)]
    base += ["--images", str(images), "--map", str(mapfile)]
    bad = CliRunner().invoke(app, [*base, "--duplicates", "both"])
    assert bad.exit_code == 1 and "duplicates 'both' must be skip" in bad.output
    assert "Nothing was imported." in bad.output
    merged = CliRunner().invoke(app, [*base, "--duplicates", "merge"])
    assert merged.exit_code == 0, merged.output
    both = twins["per"]["25.jpg"] + twins["per"]["48.jpg"]
    assert f"instances {both} added" in merged.output


def _label_studio_zip(client, headers) -> tuple[list[dict], zipfile.ZipFile]:
    r = client.get("/api/export/label-studio", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    return json.loads(z.read("default-label-studio.json")), z


def test_label_studio_download_loads_in_label_studio_as_it_is(env) -> None:
    from label_studio_sdk._extensions.label_studio_tools.core.utils import io as ls_io
    from label_studio_sdk.label_interface import LabelInterface

    client, seeded, login = env
    tasks, z = _label_studio_zip(client, login("lead"))
    with session_scope() as s:
        paths = {im.file_name: im.path for im in s.exec(select(Image))}
    assert len(tasks) == len(paths) >= 1
    config = z.read("default-label-studio.config.xml").decode()
    interface = LabelInterface(config)  # Label Studio's SDK reads our config ...
    readme = z.read("default-label-studio.README.txt").decode()
    root = str(Path(next(iter(paths.values()))).parent)
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}" in readme
    saved = ls_io.LOCAL_FILES_DOCUMENT_ROOT
    ls_io.LOCAL_FILES_DOCUMENT_ROOT = root  # ... and finds each photo under that root
    try:
        for task in tasks:
            url = task["data"]["image"]
            assert url.startswith("/data/local-files/?d="), url
            found = ls_io.resolve_local_storage_file(url)
            assert Path(found).read_bytes() == Path(paths[task["data"]["file_name"]]).read_bytes()
            assert all(task["data"].get(o.value_name) for o in interface.objects)
    finally:
        ls_io.LOCAL_FILES_DOCUMENT_ROOT = saved


def test_label_studio_download_with_a_base_url_and_a_root_the_photos_leave(env) -> None:
    client, seeded, login = env
    settings = get_settings()
    configure(**{**settings.model_dump(), "label_studio_image_url": "https://photos.example/pb/",
                 "label_studio_document_root": seeded.data_dir})  # fmt: skip
    try:
        tasks, z = _label_studio_zip(client, login("lead"))
        with session_scope() as s:
            path = Path(s.exec(select(Image)).first().path)
        rel = path.resolve().relative_to(seeded.data_dir.resolve()).as_posix()
        assert tasks[0]["data"]["image"] == f"https://photos.example/pb/{rel}"
        assert "https://photos.example/pb/" in z.read("default-label-studio.README.txt").decode()
        configure(**{**get_settings().model_dump(), "label_studio_document_root": DATA})
        r = client.get("/api/export/label-studio", headers=login("lead"))
        assert r.status_code == 422
        assert "PANELBEATER_LABEL_STUDIO_DOCUMENT_ROOT" in r.json()["detail"]
        assert path.name in r.json()["detail"]
    finally:
        configure(**settings.model_dump())
