"""VIA converter: 1.x/2.x, dict/list forms, every shape kind, the real car_damage_v0 set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.records import LabelResolver, load_label_map
from core.taxonomy import default_taxonomy
from exports import coco, via
from exports.compare import compare_records, instance_count
from exports.errors import FormatError

TAX = default_taxonomy()
DATA = Path(__file__).parent / "data"

REGIONS = [
    {
        "shape_attributes": {
            "name": "polygon",
            "all_points_x": [10, 50, 30],
            "all_points_y": [10, 10, 40],
        },
        "region_attributes": {"name": "dent"},
    },
    {
        "shape_attributes": {"name": "rect", "x": 5, "y": 6, "width": 20, "height": 10},
        "region_attributes": {"label": "scratch", "severity": "minor"},
    },
    {
        "shape_attributes": {"name": "circle", "cx": 60, "cy": 40, "r": 10},
        "region_attributes": {"class": "hood"},
    },
    {
        "shape_attributes": {
            "name": "ellipse",
            "cx": 40,
            "cy": 60,
            "rx": 20,
            "ry": 8,
            "theta": 0.5,
        },
        "region_attributes": {"kind": "wheel"},
    },
]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (100, 80)).save(tmp_path / name)
    return tmp_path


def _v1(regions_as_list: bool = False) -> dict:
    regs = REGIONS if regions_as_list else {str(i): r for i, r in enumerate(REGIONS)}
    return {
        "a.jpg123": {"filename": "a.jpg", "size": 123, "regions": regs, "file_attributes": {}},
        "b.jpg9": {"filename": "b.jpg", "size": 9, "regions": {}, "file_attributes": {}},
    }


def _check_shapes(recs) -> None:
    a = next(r for r in recs if r.file_name == "a.jpg")
    assert (a.width, a.height) == (100, 80) and a.sha256
    names = [TAX.by_id(c).name for c in a.instances.class_ids]
    assert names == ["dent", "scratch", "hood", "wheel"]
    tri, rect, circ, ell = a.instances.shapes
    assert np.array_equal(tri.polygons[0].exterior, [[10, 10], [50, 10], [30, 40]])
    assert rect.bbox.tolist() == [5, 6, 25, 16]
    assert circ.area == pytest.approx(math.pi * 100, rel=0.02)
    assert ell.area == pytest.approx(math.pi * 160, rel=0.02)
    assert a.instances.attributes[1] == {"severity": "minor"}
    b = next(r for r in recs if r.file_name == "b.jpg")
    assert len(b.instances) == 0  # an unlabelled image with its file present is kept


@pytest.mark.parametrize(
    "form",
    ["v1_dict", "v2_list_regions", "v2_project", "list_form"],
)
def test_via_forms(images: Path, form: str) -> None:
    data = {
        "v1_dict": _v1(),
        "v2_list_regions": _v1(regions_as_list=True),
        "v2_project": {
            "_via_settings": {},
            "_via_img_metadata": _v1(regions_as_list=True),
            "_via_attributes": {},
        },
        "list_form": list(_v1().values()),
    }[form]
    resolver = LabelResolver(TAX)
    recs, report = via.parse(
        json.loads(json.dumps(data)), resolver, source="via.json", images_dir=images
    )
    assert not report.failed and not report.skipped and not resolver.unknown
    _check_shapes(recs)


def test_via_label_key_and_checkbox_attribute(images: Path) -> None:
    data = {
        "a": {
            "filename": "a.jpg",
            "regions": [
                {
                    "shape_attributes": REGIONS[0]["shape_attributes"],
                    "region_attributes": {"type": {"dent": True, "scratch": False}, "note": "x"},
                }
            ],
        }
    }
    recs, report = via.parse(
        data, LabelResolver(TAX), source="v.json", images_dir=images, label_key="type"
    )
    assert recs[0].instances.class_ids.tolist() == [TAX.by_name("dent").id]
    recs, report = via.parse(data, LabelResolver(TAX), source="v.json", images_dir=images)
    assert "cannot tell which of the region attributes" in report.failed[0]


def test_via_bad_input_reported_and_good_part_kept(images: Path) -> None:
    data = _v1()
    data["nofile"] = {"filename": "", "regions": {"0": REGIONS[0]}}
    data["gone.jpg1"] = {"filename": "gone.jpg", "regions": {"0": REGIONS[0]}}
    data["a.jpg123"]["regions"]["9"] = {
        "shape_attributes": {"name": "polygon", "all_points_x": [1, 2], "all_points_y": [1, 2]},
        "region_attributes": {"name": "dent"},
    }
    data["a.jpg123"]["regions"]["10"] = {
        "shape_attributes": {
            "name": "polygon",
            "all_points_x": [1, 20, 9],
            "all_points_y": [1, 2, 9],
        },
        "region_attributes": {"name": "smudge"},
    }
    resolver = LabelResolver(TAX)
    recs, report = via.parse(data, resolver, source="via.json", images_dir=images)
    assert [r.file_name for r in recs] == ["a.jpg", "b.jpg"]
    assert instance_count(recs) == 4
    assert any("entry 'nofile' has no 'filename'" in m for m in report.failed)
    assert any("'gone.jpg': the file is not in" in m for m in report.skipped)
    assert any(
        "region 9: polygon: a polygon needs at least 3 points, got 2; fix or delete this region"
        in m
        for m in report.failed
    )
    assert resolver.unknown == {"smudge"}
    with pytest.raises(FormatError, match="VIA file holds a JSON object"):
        via.parse("nonsense", resolver, source="via.json")
    with pytest.raises(FormatError, match="does not look like a VIA"):
        via.parse({"images": {"x": 1}, "k": {"y": 2}}, resolver, source="via.json")


@pytest.mark.parametrize("split,n_images,n_instances", [("train", 49, 78), ("val", 15, 19)])
def test_car_damage_v0(datasets_dir: Path, split: str, n_images: int, n_instances: int) -> None:
    folder = datasets_dir / "car_damage_v0" / "customImages" / split
    resolver = LabelResolver(TAX, load_label_map(DATA / "car_damage_v0_map.json"))
    recs, report = via.parse(
        json.loads((folder / "via_region_data.json").read_text()),
        resolver,
        source=split,
        images_dir=folder,
    )
    assert not resolver.unknown and not report.failed
    assert (len(recs), instance_count(recs)) == (n_images, n_instances)
    if split == "train":  # VIA's 3 demo entries: no regions, no file
        assert len(report.skipped) == 3 and all("demo" in m for m in report.skipped)
        assert any("test_pattern_qbist.jpg" in m for m in report.skipped)
    # and through COCO back, exactly
    back, rep = coco.parse(
        json.loads(json.dumps(coco.build(recs, TAX))), LabelResolver(TAX), source="x"
    )
    assert compare_records(recs, back, atol=0.0) == []
