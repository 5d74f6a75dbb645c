"""Image file names keep no way out of a folder: what ``exports.file_names`` leaves of a name,
and what the COCO, YOLO and Label Studio writers carry for a name stored before the imports
cleaned it."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.records import ImageRecord
from core.taxonomy import default_taxonomy
from exports.file_names import record_file_name, safe_base_name, safe_file_name


@pytest.mark.parametrize(
    "name,safe",
    [
        ("car.jpg", "car.jpg"),
        ("train/17.jpg", "train/17.jpg"),
        ("..\\..\\evil.jpg", "evil.jpg"),
        ("../../evil.jpg", "evil.jpg"),
        ("sub\\..\\..\\evil.jpg", "sub/evil.jpg"),
        ("C:\\Users\\me\\car.jpg", "Users/me/car.jpg"),
        ("/etc/./passwd.png", "etc/passwd.png"),
        ("a//b\\\\c.jpg", "a/b/c.jpg"),
        ("bad\x00name\n.jpg", "badname.jpg"),
        ("..", ""),
        ("\\", ""),
    ],
)
def test_safe_file_name_drops_every_way_out(name: str, safe: str) -> None:
    assert safe_file_name(name) == safe
    assert safe_base_name(name) == safe.rsplit("/", 1)[-1]


def test_a_name_with_nothing_left_falls_back_to_the_stored_file() -> None:
    assert record_file_name(ImageRecord("..", 1, 1, meta={"path": "/m/ab12.jpg"})) == "ab12.jpg"
    assert record_file_name(ImageRecord("..\\", 1, 1)) == "image"


#: Rows stored before the upload cleaned names keep the client's name.
STORED = ["..\\..\\evil.jpg", "../x/../../evil.jpg", "ok/car.jpg"]


def _records() -> list[ImageRecord]:
    return [ImageRecord(n, 20, 10, split="train", sha256=f"{k:064x}") for k, n in enumerate(STORED)]


def _no_way_out(names: list[str]) -> None:
    assert not any("\\" in n or ".." in n.split("/") or n.startswith("/") for n in names), names


def test_coco_and_label_studio_write_the_safe_names() -> None:
    from exports import coco, label_studio

    data = coco.build(_records(), default_taxonomy())
    names = [im["file_name"] for im in data["images"]]
    assert names == ["evil.jpg", "x/evil.jpg", "ok/car.jpg"]
    tasks = label_studio.build_tasks(_records(), default_taxonomy())
    assert [t["data"]["file_name"] for t in tasks] == names
    assert [t["data"]["image"] for t in tasks] == names  # the default image URL
    _no_way_out(names)


def test_yolo_writes_its_label_files_under_the_safe_base_names(tmp_path: Path) -> None:
    from exports import yolo

    yolo.write(_records(), default_taxonomy(), tmp_path, copy_images=False)
    written = sorted(p.name for p in (tmp_path / "labels" / "train").iterdir())
    assert written == ["000001_evil.txt", "car.txt", "evil.txt"]
    _no_way_out([str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")])


def test_a_slot_upload_names_its_photo_as_it_is_stored(db_session, project) -> None:
    import io

    import numpy as np
    from PIL import Image as PILImage

    from db.models import Image
    from services.claims.inspections import create_inspection, create_vehicle, upload_into_slot

    buf = io.BytesIO()
    PILImage.fromarray(np.full((16, 20, 3), 90, np.uint8)).save(buf, format="PNG")
    v = create_vehicle(db_session, project, plate="X1")
    i = create_inspection(db_session, project, vehicle_id=v.id, kind="pick_up")
    out = upload_into_slot(
        db_session, project, i.id, "front", [("..\\..\\evil.png", buf.getvalue())]
    )
    ((name, slot, image_id),) = out.placed
    assert (name, slot) == ("evil.png", "front")
    assert db_session.get(Image, image_id).file_name == "evil.png"
