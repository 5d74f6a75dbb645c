"""COCO converter: round trips on synthetic shapes and on the real datasets, and bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from core.records import LabelResolver, load_label_map
from core.taxonomy import default_taxonomy
from exports import coco
from exports.compare import compare_records, instance_count
from exports.errors import FormatError
from exports.synthetic import tiny_predictions, tiny_records

TAX = default_taxonomy()
DATA = Path(__file__).parent / "data"

#: (json file relative to the datasets folder, map file or None, images, instances)
COCO_SETS = [
    ("coco_car_damage/train/COCO_train_annos.json", "coco_car_damage_map.json", 59, 140),
    ("coco_car_damage/train/COCO_mul_train_annos.json", "coco_car_damage_map.json", 59, 177),
    ("coco_car_damage/train/COCO_merged_annos.json", "coco_car_damage_map.json", 59, 317),
    ("coco_car_damage/val/COCO_merged_annos.json", "coco_car_damage_map.json", 11, 62),
    ("coco_car_damage/val/COCO_val_annos.json", "coco_car_damage_map.json", 11, None),
    ("coco_car_damage/val/COCO_mul_val_annos.json", "coco_car_damage_map.json", 11, None),
    ("car_parts_dsmlr/trainingset/annotations.json", "dsmlr_map.json", 400, 3073),
]


def _roundtrip(records, **kw):
    data = json.loads(json.dumps(coco.build(records, TAX, **kw)))  # through real JSON text
    resolver = LabelResolver(TAX)
    back, report = coco.parse(data, resolver, source="export.json")
    assert not resolver.unknown and not report.failed and not report.skipped
    return data, back


def test_tiny_roundtrip_exact_polygons_and_exact_mask_for_holes() -> None:
    recs = tiny_records(TAX)
    data, back = _roundtrip(recs)
    # polygons (incl. two parts and a 3-point one) come back exactly
    hole_free = [
        (r.file_name, j) for r in recs for j, s in enumerate(r.instances.shapes) if not s.has_holes
    ]
    assert compare_records(recs, back, atol=1e-9, min_iou=None, splits=True) == [
        "a.jpg: instance 0 geometry differs"  # the square with a hole: RLE, compared below
    ]
    assert len(hole_free) == 4
    # holes go through RLE: the traced shape rasterises to exactly the same pixels
    assert compare_records(recs, back, atol=None, min_iou=1.0) == []
    seg = data["annotations"][0]["segmentation"]
    assert isinstance(seg, dict) and isinstance(seg["counts"], str)
    assert len(data["annotations"][1]["segmentation"]) == 2  # two parts = two polygon lists
    assert [r.sha256 for r in back] == [r.sha256 for r in recs]


def test_build_categories_attributes_scores() -> None:
    data = coco.build(tiny_predictions(TAX), TAX)
    assert len(data["categories"]) == len(TAX) == 94
    assert {c["supercategory"] for c in data["categories"]} == {"damage", "fake", "part"}
    dent = next(c for c in data["categories"] if c["name"] == "dent")
    assert dent == {"id": TAX.by_name("dent").id, "name": "dent", "supercategory": "damage"}
    ann = data["annotations"][1]
    assert ann["attributes"] == {"severity": "moderate", "occluded": True}
    assert ann["score"] == pytest.approx(0.7)
    assert ann["bbox"] == [130.0, 10.0, 60.0, 140.0]
    assert (
        "attributes"
        not in coco.build(tiny_records(TAX), TAX, include_attributes=False)["annotations"][0]
    )
    _, back = _roundtrip(tiny_predictions(TAX))
    assert compare_records(tiny_predictions(TAX), back, atol=None, min_iou=1.0, scores=True) == []


def test_rle_forms_and_coco_annotator_flavour() -> None:
    from pycocotools import mask as mask_utils

    m = np.zeros((20, 30), dtype=np.uint8)
    m[2:12, 5:25] = 1
    m[5:8, 10:15] = 0  # a hole
    compressed = mask_utils.encode(np.asfortranarray(m))
    # uncompressed RLE: column-major run lengths starting with zeros
    flat = m.ravel(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    data = {
        "images": [
            {
                "id": 0,
                "file_name": "x.jpg",
                "width": 30,
                "height": 20,
                "deleted": False,
                "events": [],
            }
        ],
        "categories": [
            {"id": 0, "name": "_background_", "supercategory": ""},
            {"id": 3, "name": "back_bumper", "supercategory": "", "color": "#fff"},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 0,
                "category_id": 3,
                "iscrowd": True,
                "isbbox": False,
                "metadata": {},
                "segmentation": {"size": [20, 30], "counts": compressed["counts"].decode()},
            },
            {
                "id": 2,
                "image_id": 0,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": {"size": [20, 30], "counts": runs},
            },
            {"id": 3, "image_id": 0, "category_id": 0, "segmentation": [[0, 0, 5, 0, 5, 5]]},
        ],
    }
    resolver = LabelResolver(TAX, load_label_map(DATA / "dsmlr_map.json"))
    recs, report = coco.parse(data, resolver, source="ann.json")
    inst = recs[0].instances
    assert len(inst) == 2 and inst.class_ids.tolist() == [TAX.by_name("rear_bumper").id] * 2
    for shape in inst.shapes:
        assert np.array_equal(shape.to_mask(20, 30), m.astype(bool))
        assert shape.has_holes
    assert inst.attributes[0] == {"iscrowd": True} and inst.attributes[1] == {}
    assert (
        len(report.skipped) == 1
        and "annotation 3" in report.skipped[0]
        and "_background_" in report.skipped[0]
    )


def test_bad_input_messages_and_good_part_kept() -> None:
    with pytest.raises(FormatError, match=r"bad\.json.*no 'images' list"):
        coco.parse({"annotations": [], "categories": []}, LabelResolver(TAX), source="bad.json")
    with pytest.raises(FormatError, match=r"bad\.json: images\[1\].*'width'"):
        coco.parse(
            {
                "images": [
                    {"id": 1, "file_name": "a", "width": 5, "height": 5},
                    {"id": 2, "file_name": "b", "width": "5", "height": 5},
                ]
            },
            LabelResolver(TAX),
            source="bad.json",
        )
    with pytest.raises(FormatError, match=r"'images' must be a list"):
        coco.parse({"images": {}}, LabelResolver(TAX), source="bad.json")
    data = coco.build(tiny_records(TAX), TAX)
    data["annotations"][2]["segmentation"] = [[1, 1, 5, 5]]  # a polygon with 2 points
    data["annotations"][3]["category_id"] = 999
    data["categories"].append({"id": 999, "name": "smudge", "supercategory": "damage"})
    resolver = LabelResolver(TAX)
    recs, report = coco.parse(data, resolver, source="two.json")
    assert report.failed == [
        "two.json: annotation 3 (image 'a.jpg'): part 1: a polygon needs at least 3 points, got 2; "
        "fix or delete this annotation"
    ]
    assert resolver.unknown == {"smudge"}
    assert instance_count(recs) == 5 - 2  # the good part is kept
    with pytest.raises(Exception, match=r"'smudge'.*--map"):
        resolver.raise_if_unknown("two.json")


@pytest.mark.parametrize("rel,map_name,n_images,n_instances", COCO_SETS)
def test_real_dataset_roundtrip(
    datasets_dir: Path, rel: str, map_name: str, n_images: int, n_instances
) -> None:
    data = json.loads((datasets_dir / rel).read_text())
    original = copy.deepcopy(data)
    resolver = LabelResolver(TAX, load_label_map(DATA / map_name))
    recs, report = coco.parse(data, resolver, source=rel)
    assert data == original  # parse does not modify its input
    assert not resolver.unknown and not report.failed, report.failed[:3]
    assert len(recs) == n_images
    if n_instances is not None:
        assert instance_count(recs) == n_instances
    multi = sum(len(s.polygons) > 1 for r in recs for s in r.instances.shapes)
    if "dsmlr" in rel:
        assert multi == 194  # the set's multi-polygon annotations stay multi-part
    _, back = _roundtrip(recs)
    assert compare_records(recs, back, atol=0.0) == []


@pytest.mark.parametrize(
    "extra_category,used,unknown,note",
    [
        # Roboflow's parent category: no annotation uses it, so it needs no map entry
        ({"id": 0, "name": "car", "supercategory": "none"}, False, set(), "'car' (id 0)"),
        # an empty COCO-Annotator background: ignored the same way
        ({"id": 0, "name": "_background_", "supercategory": ""}, False, set(), "'_background_'"),
        # a category an annotation uses still has to be known
        ({"id": 0, "name": "car", "supercategory": "none"}, True, {"car"}, None),
    ],
)
def test_categories_no_annotation_uses_are_noted_and_ignored(
    extra_category: dict, used: bool, unknown: set, note: str | None
) -> None:
    data = coco.build(tiny_records(TAX), TAX)
    data["categories"].append(extra_category)
    if used:
        data["annotations"][0]["category_id"] = extra_category["id"]
    resolver = LabelResolver(TAX)
    recs, report = coco.parse(data, resolver, source="roboflow.json")
    assert resolver.unknown == unknown
    notes = [n for n in report.notes if "roboflow.json: category" in n]
    named = [n for n in notes if repr(extra_category["name"]) in n]
    if note is None:
        assert named == []
        assert instance_count(recs) == 5 - 1  # the annotation waits for a map entry
    else:
        assert len(named) == 1 and note in named[0] and "used by no annotation; ignored" in named[0]
        assert instance_count(recs) == 5 and report.skipped == report.failed == []


def test_roboflow_export_parses_without_a_map_entry_for_its_parent(datasets_dir: Path) -> None:
    path = datasets_dir / "car_damage_bilgi" / "valid" / "_annotations.coco.json"
    data = json.loads(path.read_text())
    assert {"id": 0, "name": "car", "supercategory": "none"} in data["categories"]
    resolver = LabelResolver(TAX, load_label_map(DATA / "bilgi_map.json"))
    recs, report = coco.parse(data, resolver, source="valid.json")
    assert resolver.unknown == set() and report.failed == []
    assert report.notes == ["valid.json: category 'car' (id 0) is used by no annotation; ignored"]
    assert (len(recs), instance_count(recs)) == (492, 1151)
