"""CVAT for images 1.1 XML: the RLE, round trips on tiny shapes and real datasets, CVAT's
quirks, bad input, and datumaro (CVAT's own dataset library) as the judge both ways.

The datumaro tests skip when it is not importable: it is not a project dependency (it pulls
opencv-python-headless beside our opencv-python, pandas and pyarrow). Run them with
``pip install datumaro==1.13.12`` in a separate venv whose site-packages is appended to
``sys.path`` after the project's own."""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from core.geometry import Polygon, Shape, shape_to_mask
from core.instances import Instances
from core.records import ImageRecord, LabelResolver, load_label_map
from core.taxonomy import default_taxonomy
from exports import coco, cvat
from exports.compare import compare_records, instance_count
from exports.errors import FormatError

TAX = default_taxonomy()
DATA = Path(__file__).parent / "data"
DENT, SCRATCH, HOOD = (TAX.by_name(n).id for n in ("dent", "scratch", "hood"))


def _square(x: float, y: float, s: float) -> np.ndarray:
    return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], dtype=np.float64)


# -- the RLE -------------------------------------------------------------------


def _reference_rle(mask: np.ndarray) -> list[int]:
    """Brute force: walk the tight box row by row, counting runs from a run of 0s."""
    ys, xs = np.nonzero(mask)
    box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    runs, current, n = [], False, 0
    for v in box.ravel().tolist():
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    return runs + [n]


MASKS = {
    "one pixel": ["....", ".#..", "....", "...."],
    "starts with 1s": ["##..", "##..", "....", "...."],
    "hole": ["#####", "#...#", "#.#.#", "#...#", "#####"],
    "two parts": ["##...#", "##...#", "......", "...##."],
    "full": ["###", "###"],
}


@pytest.mark.parametrize("name", list(MASKS))
def test_rle_matches_brute_force_and_decodes_back(name: str) -> None:
    mask = np.array([[c == "#" for c in row] for row in MASKS[name]])
    runs, box = cvat.mask_to_cvat_rle(mask)
    assert runs == _reference_rle(mask)
    assert runs[0] == 0 or not mask[box[1], box[0]]  # CVAT's runs start with 0s
    back = cvat.cvat_rle_to_mask(runs, box, *mask.shape)
    assert np.array_equal(back, mask)


@pytest.mark.parametrize(
    "runs,box,message",
    [
        ([0, 3], (0, 0, 2, 2), "covers 3 pixels"),
        ([0, 4], (3, 0, 2, 2), "does not lie inside"),
        ([0, 4], (0, 0, 0, 2), "does not lie inside"),
    ],
)
def test_rle_refuses_runs_that_do_not_fit(runs, box, message) -> None:
    from core.geometry import GeometryError

    with pytest.raises(GeometryError, match=message):
        cvat.cvat_rle_to_mask(runs, box, 4, 4)


# -- round trips on tiny shapes -----------------------------------------------


def _records() -> list[ImageRecord]:
    donut = Shape((Polygon(_square(10, 10, 30), (_square(20, 20, 10),)),))
    two_parts = Shape((Polygon(_square(50, 5, 10)), Polygon(_square(70, 5, 10))))
    plain = Shape.from_ring(_square(5.25, 50.5, 20))
    inst = Instances(
        [plain, two_parts, donut],
        [DENT, SCRATCH, HOOD],
        attributes=[
            {"severity": "severe", "part_id": HOOD, "occluded": True},
            {"fake": True, "fake_note": "painted on, <look> & see"},
            {},
        ],
    )
    return [
        ImageRecord("a.jpg", 100, 80, inst, meta={"cvat_tags": ["rain", "night"]}),
        ImageRecord("sub/b.png", 40, 30),
    ]


def test_round_trip_polygons_parts_holes_attributes_tags(tmp_path: Path) -> None:
    recs = _records()
    path = tmp_path / "annotations.xml"
    cvat.write(recs, TAX, path, zipped=False)
    root = ET.parse(path).getroot()
    assert root.findtext("version") == "1.1"
    first = root.find("image")
    assert [el.tag for el in first if el.tag != "tag"] == ["polygon", "polygon", "polygon", "mask"]
    groups = [el.get("group_id") for el in first.findall("polygon")]
    assert groups[0] is None and groups[1] == groups[2] is not None  # the two parts share one
    assert first.find("polygon").get("occluded") == "1"
    labels = {el.findtext("name") for el in root.iter("label")}
    assert {"dent", "hood", "rain", "night"} <= labels  # tags are declared labels too

    back, report = cvat.parse(path, LabelResolver(TAX), source="x")
    assert not report.failed and not report.skipped
    assert compare_records(recs, back, atol=0.0, min_iou=1.0) == []
    assert back[0].meta["cvat_tags"] == ["rain", "night"]
    assert back[0].instances.attributes[0]["part_id"] == HOOD  # an int again, as the store wants
    assert back[0].instances.shapes[2].has_holes  # the mask traces back to a donut


def test_zip_holds_the_xml_and_the_photos(tmp_path: Path) -> None:
    recs = _records()
    for rec in recs:
        rec.meta["path"] = str(tmp_path / Path(rec.file_name).name)
        Image.new("RGB", (rec.width, rec.height)).save(rec.meta["path"])
    cvat.write(recs, TAX, tmp_path / "out.zip", zipped=True)
    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        assert sorted(z.namelist()) == ["annotations.xml", "images/a.jpg", "images/sub/b.png"]
        z.extractall(tmp_path / "unzipped")
    # the import finds the photos in images/ beside the XML
    unzipped = tmp_path / "unzipped"
    back, _ = cvat.parse(
        unzipped / "annotations.xml", LabelResolver(TAX), source="x", images_dir=unzipped
    )
    assert [r.meta.get("path") for r in back] == ["images/a.jpg", "images/sub/b.png"]


def test_zip_without_a_photo_file_writes_nothing(tmp_path: Path) -> None:
    recs = _records()
    recs[0].meta["path"] = str(tmp_path / "gone.jpg")
    with pytest.raises(FormatError, match="gone.jpg"):
        cvat.write(recs, TAX, tmp_path / "out.zip", zipped=True)
    assert list(tmp_path.iterdir()) == []


def test_same_file_name_twice_gets_two_image_names() -> None:
    recs = [ImageRecord("x.jpg", 4, 4), ImageRecord("x.jpg", 4, 4)]
    assert cvat.image_names(recs) == ["x.jpg", "000001_x.jpg"]


# -- CVAT's quirks and bad input ----------------------------------------------

QUIRKS = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <image id="0" name="car.jpg" width="100" height="100">
    <polygon label="scratch" source="manual" occluded="0" z_order="2"
             points="1,1;20,1;20,20"/>
    <box label="dent" source="auto" occluded="1" xtl="30" ytl="30" xbr="40" ybr="45" z_order="1">
      <attribute name="severity">minor</attribute>
      <attribute name="fake">false</attribute>
    </box>
    <polyline label="dent" points="1,1;5,5"/>
    <points label="dent" points="1,1"/>
    <polygon label="dent" points="1,1;2,x;3,3"/>
    <tag label="clean" source="manual"/>
  </image>
  <track id="0" label="hood" source="manual">
    <polygon frame="0" outside="0" keyframe="1" points="50,50;90,50;90,90"/>
    <polygon frame="1" outside="1" keyframe="1" points="50,50;90,50;90,90"/>
  </track>
  <image id="1" name="two.jpg" width="100" height="100"/>
</annotations>
"""


def test_quirks_z_order_auto_outside_lines_and_tracks(tmp_path: Path) -> None:
    path = tmp_path / "q.xml"
    path.write_text(QUIRKS)
    recs, report = cvat.parse(path, LabelResolver(TAX), source="q.xml")
    inst = recs[0].instances
    # z_order 0 (the track's shape), 1 (the box), 2 (the polygon): drawing order kept
    assert inst.class_ids.tolist() == [HOOD, DENT, SCRATCH]
    assert inst.data["cvat_source"] == ["manual", "auto", "manual"]
    assert inst.attributes[1] == {"severity": "minor", "fake": False, "occluded": True}
    assert inst.shapes[1].bbox.tolist() == [30, 30, 40, 45]
    assert len(recs[1].instances) == 0  # the track's frame 1 is outside
    assert recs[0].meta["cvat_tags"] == ["clean"]
    assert len(report.skipped) == 2 and "polyline has no area" in report.skipped[0]
    assert len(report.failed) == 1 and "'car.jpg'" in report.failed[0]
    assert "'points' must read" in report.failed[0]


def test_unknown_labels_are_collected_for_the_map(tmp_path: Path) -> None:
    path = tmp_path / "q.xml"
    path.write_text(QUIRKS.replace('"scratch"', '"kratzer"'))
    resolver = LabelResolver(TAX)
    cvat.parse(path, resolver, source="q.xml")
    assert "kratzer" in resolver.unknown
    mapped = LabelResolver(TAX, {"kratzer": "scratch"})
    recs, _ = cvat.parse(path, mapped, source="q.xml")
    assert SCRATCH in recs[0].instances.class_ids.tolist()


@pytest.mark.parametrize(
    "text,message",
    [
        ("{}", "not valid XML"),
        ("<coco/>", "root element is <coco>"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><annotations/>', "no DOCTYPE"),
        ('<annotations><image id="0" name="a.jpg" width="w" height="2"/></annotations>', "whole"),
    ],
)
def test_bad_files_name_the_file_and_what_to_do(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(FormatError, match=message) as e:
        cvat.parse(path, LabelResolver(TAX), source=str(path))
    assert "bad.xml" in str(e.value)


# -- real datasets ---------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_car_damage_through_cvat_and_back(datasets_dir: Path, split: str) -> None:
    folder = datasets_dir / "coco_car_damage" / split
    resolver = LabelResolver(TAX, load_label_map(DATA / "coco_car_damage_map.json"))
    recs, _ = coco.parse(
        json.loads((folder / "COCO_merged_annos.json").read_text()), resolver, source=split
    )
    assert instance_count(recs) > 50
    data = cvat.build(recs, TAX)
    back, report = cvat.parse(ET.fromstring(data), LabelResolver(TAX), source="x")
    assert not report.failed and not report.skipped
    # CVAT's two decimals: every vertex within half a hundredth of a pixel
    assert compare_records(recs, back, atol=0.005, attributes=False) == []


# -- datumaro, CVAT's own library, as the judge ----------------------------------

DATUMARO_MISSING = (
    "datumaro (CVAT's dataset library, the judge of this format) is not importable: run "
    "bash .ci/datumaro.sh (CI does), or set PANELBEATER_DATUMARO_VENV to a venv that has it"
)


def _datumaro():
    """datumaro from its own venv (``.ci/datumaro.sh``), its site-packages after the
    project's, so the project's numpy and cv2 stay the ones imported."""
    venv = Path(os.environ.get("PANELBEATER_DATUMARO_VENV", "/opt/panelbeater-datumaro-venv"))
    for site in sorted(venv.glob("lib/python*/site-packages")):
        if str(site) not in sys.path:
            sys.path.append(str(site))
    return pytest.importorskip("datumaro", reason=DATUMARO_MISSING)


def _export_folder(tmp_path: Path, recs: list[ImageRecord]) -> Path:
    for rec in recs:
        rec.meta["path"] = str(tmp_path / "src" / rec.file_name)
        Path(rec.meta["path"]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (rec.width, rec.height), "white").save(rec.meta["path"])
    cvat.write(recs, TAX, tmp_path / "out.zip", zipped=True)
    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        z.extractall(tmp_path / "dataset")
    return tmp_path / "dataset"


def test_datumaro_reads_every_instance_of_our_export(tmp_path: Path) -> None:
    dm = _datumaro()
    recs = _records()
    ds = dm.Dataset.import_from(str(_export_folder(tmp_path, recs)), "cvat")
    labels = ds.categories()[dm.AnnotationType.label]
    items = {item.id: item for item in ds}
    assert set(items) == {"a", "sub/b"}
    anns = items["a"].annotations
    kinds = sorted((a.type.name, labels[a.label].name) for a in anns if hasattr(a, "label"))
    assert kinds == [
        ("label", "night"),
        ("label", "rain"),
        ("mask", "hood"),
        ("polygon", "dent"),
        ("polygon", "scratch"),
        ("polygon", "scratch"),
    ]
    by_type = {a.type.name: a for a in anns}
    donut = recs[0].instances.shapes[2]
    assert np.array_equal(by_type["mask"].image.astype(bool), shape_to_mask(donut, 80, 100))
    parts = [a for a in anns if a.type.name == "polygon" and labels[a.label].name == "scratch"]
    assert parts[0].group == parts[1].group != 0  # one instance, two parts
    dent = next(a for a in anns if a.type.name == "polygon" and labels[a.label].name == "dent")
    assert dent.attributes["occluded"] is True
    assert dent.attributes["severity"] == "severe"


def test_we_read_what_datumaro_writes(tmp_path: Path) -> None:
    dm = _datumaro()
    recs = _records()
    ds = dm.Dataset.import_from(str(_export_folder(tmp_path, recs)), "cvat")
    ds.export(str(tmp_path / "by_datumaro"), "cvat", save_media=True)
    out = tmp_path / "by_datumaro"
    xml = next(out.glob("*.xml"))
    back, report = cvat.parse(xml, LabelResolver(TAX), source=str(xml), images_dir=out)
    assert not report.failed
    by_name = {Path(r.file_name).stem: r for r in back}
    a = by_name["a"]
    assert sorted(a.meta["cvat_tags"]) == ["night", "rain"]
    want = recs[0]
    got = ImageRecord("a.jpg", a.width, a.height, a.instances)
    assert compare_records([want], [got], atol=0.0, min_iou=1.0, attributes=False) == []
    assert a.instances.attributes[0]["severity"] == "severe"
    assert a.instances.attributes[0]["occluded"] is True
    shutil.rmtree(out)
