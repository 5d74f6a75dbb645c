"""YOLO segmentation converter: layout, merged multi-part rings, round trips, real datasets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from core.records import LabelResolver, load_label_map
from core.taxonomy import default_taxonomy
from exports import coco, via, yolo
from exports.compare import compare_records, instance_count
from exports.errors import FormatError
from exports.synthetic import tiny_records

TAX = default_taxonomy()
DATA = Path(__file__).parent / "data"


def _basename(r) -> str:
    # the export flattens folders and prefixes "NNNNNN_" where two images share a stem
    return re.sub(r"^\d{6}_", "", r.file_name.replace("\\", "/").rsplit("/", 1)[-1])


def _with_image_files(records, folder: Path):
    for r in records:
        p = folder / _basename(r)
        Image.new("RGB", (r.width, r.height), (90, 90, 90)).save(p)
        r.meta["path"] = str(p)
    return records


def test_merge_rings_matches_ultralytics() -> None:
    from ultralytics.data.converter import merge_multi_segment

    rng = np.random.default_rng(1)
    for n in (2, 3, 5):
        rings = [rng.uniform(0, 100, (int(rng.integers(3, 9)), 2)) for _ in range(n)]
        ours = yolo.merge_rings(rings)
        theirs = np.concatenate(merge_multi_segment([r.ravel().tolist() for r in rings]))
        assert np.array_equal(ours, theirs)


def test_tiny_roundtrip(tmp_path: Path) -> None:
    """YOLO quantises (6 decimals of the normalised size) and merges parts and holes into one
    ring, so shapes are compared by mask IoU >= 0.99; classes, splits and sizes exactly."""
    recs = _with_image_files(tiny_records(TAX), tmp_path)
    out = yolo.write(recs, TAX, tmp_path / "ds")
    data = yaml.safe_load(out.data_yaml.read_text())
    assert data["names"][0] == "dent" and len(data["names"]) == 94
    assert (data["train"], data["val"], data["test"]) == (
        "images/train",
        "images/val",
        "images/test",
    )
    assert out.images == {"train": 1, "val": 1, "test": 1} and out.instances["train"] == 3
    lines = (tmp_path / "ds/labels/train/a.txt").read_text().splitlines()
    assert lines[2].split()[0] == str(
        TAX.head_index(TAX.by_name("scratch").id) + 0
    )  # "scratch" = index 1
    assert lines[2] == "1 0.050000 0.812500 0.300000 0.875000 0.150000 0.968750"
    assert (tmp_path / "ds/labels/test/c.txt").read_text() == ""
    resolver = LabelResolver(TAX)
    back, report = yolo.parse(out.data_yaml, resolver)
    assert not report.failed and not resolver.unknown
    assert (
        compare_records(
            recs, back, key=_basename, atol=1e-6, min_iou=0.99, attributes=False, splits=True
        )
        == []
    )
    # exact where no quantisation bites: the 3-point polygon has 6-decimal-exact coordinates
    tri = next(r for r in back if _basename(r) == "a.jpg").instances.shapes[2]
    assert tri.almost_equal(recs[0].instances.shapes[2], atol=1e-9)


def test_group_filter_and_contiguous_indices(tmp_path: Path) -> None:
    recs = tiny_records(TAX)
    out = yolo.write(recs, TAX, tmp_path / "parts", copy_images=False, group="part")
    names = yaml.safe_load(out.data_yaml.read_text())["names"]
    assert list(names) == list(range(61)) and names[0] == "front_bumper"
    assert out.instances_left_out == 3  # dent, scratch, fakemud are not parts
    wheel = TAX.head_index(TAX.by_name("wheel").id)
    assert (tmp_path / "parts/labels/val/b.txt").read_text().split()[0] == str(wheel)
    with pytest.raises(FormatError, match="has no readable file"):
        yolo.write(recs, TAX, tmp_path / "x", copy_images=True)


def test_bad_label_lines_reported(tmp_path: Path) -> None:
    recs = _with_image_files(tiny_records(TAX)[:1], tmp_path)
    out = yolo.write(recs, TAX, tmp_path / "ds")
    label = tmp_path / "ds/labels/train/a.txt"
    label.write_text(
        label.read_text()
        + "0 0.1 0.1 0.2 0.2 0.3\n500 0.1 0.1 0.2 0.2 0.3 0.1\nx y\n0 0.5 0.5 0.2 0.2\n"
    )
    back, report = yolo.parse(out.data_yaml, LabelResolver(TAX))
    assert len(report.failed) == 3
    assert report.failed[0].startswith(f"{label}:4: ") and "even length" in report.failed[0]
    assert ":5: class index 500 is not in data.yaml" in report.failed[1]
    assert ":6: expected '<class index> x1 y1 ...'" in report.failed[2]
    assert len(back[0].instances) == 4  # 3 good rings + the detection box line (4 values)
    assert back[0].instances.shapes[3].bbox.tolist() == [80.0, 64.0, 120.0, 96.0]
    with pytest.raises(FormatError, match="does not exist"):
        yolo.parse(tmp_path / "nope.yaml", LabelResolver(TAX))


def _dataset_records(datasets_dir: Path, which: str):
    if which == "car_damage_v0":
        recs = []
        for split in ("train", "val"):
            folder = datasets_dir / "car_damage_v0/customImages" / split
            r, _ = via.parse(
                json.loads((folder / "via_region_data.json").read_text()),
                LabelResolver(TAX),
                source=split,
                images_dir=folder,
            )
            for x in r:
                x.meta["path"] = str(folder / x.file_name)
                x.split = split
                x.file_name = f"{split}_{x.file_name}"
            recs += r
        return recs
    rel, mapf, img_dir = {
        "coco_car_damage": (
            "coco_car_damage/train/COCO_merged_annos.json",
            "coco_car_damage_map.json",
            "coco_car_damage/train",
        ),
        "car_parts_dsmlr": (
            "car_parts_dsmlr/trainingset/annotations.json",
            "dsmlr_map.json",
            "car_parts_dsmlr/trainingset/JPEGImages",
        ),
    }[which]
    recs, _ = coco.parse(
        json.loads((datasets_dir / rel).read_text()),
        LabelResolver(TAX, load_label_map(DATA / mapf)),
        source=rel,
    )
    for x in recs:
        x.meta["path"] = str(datasets_dir / img_dir / x.file_name)
    return recs


@pytest.mark.parametrize("which", ["car_damage_v0", "coco_car_damage", "car_parts_dsmlr"])
def test_real_dataset_roundtrip(datasets_dir: Path, tmp_path: Path, which: str) -> None:
    recs = _dataset_records(datasets_dir, which)
    out = yolo.write(recs, TAX, tmp_path / "ds", group=None)
    assert sum(out.instances.values()) == instance_count(recs)
    back, report = yolo.parse(out.data_yaml, LabelResolver(TAX))
    assert not report.failed
    # Quantised (6 decimals) and merged, so compared by mask IoU, at 4 samples per pixel side:
    # these labels often put vertices exactly on pixel centres, where a 1e-7 rounding flips
    # a whole row of single-sample pixels (IoU 0.96 on a 20 px part) without moving the region.
    diffs = compare_records(
        recs, back, key=_basename, atol=None, min_iou=0.99, attributes=False, iou_scale=4
    )
    assert diffs == []
