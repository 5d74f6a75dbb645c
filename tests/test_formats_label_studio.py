"""Label Studio converter: tasks, brush RLE, rectangles, real LS export shapes, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.instances import Instances
from core.records import LabelResolver, load_label_map
from core.taxonomy import default_taxonomy
from exports import coco, label_studio
from exports.compare import compare_records, instance_count
from exports.errors import FormatError
from exports.synthetic import tiny_predictions, tiny_records

TAX = default_taxonomy()
DATA = Path(__file__).parent / "data"


def _with_predictions():
    recs = tiny_records(TAX)
    for r, p in zip(recs, tiny_predictions(TAX), strict=True):
        r.meta["predictions"] = p.instances
        r.meta["model_version"] = "yolo-test-1"
    return recs


def test_tiny_roundtrip_with_predictions() -> None:
    """Polygons come back exactly (to float rounding of the percent conversion); holes and
    two-part shapes go through brush RLE, which rasterises: compared by mask, and the mask is
    identical (IoU 1.0). Attributes, scores, splits and predictions come back."""
    recs = _with_predictions()
    tasks = json.loads(json.dumps(label_studio.build_tasks(recs, TAX, include_predictions=True)))
    types = [r["type"] for r in tasks[0]["annotations"][0]["result"]]
    assert types == ["brushlabels", "brushlabels", "choices", "choices", "polygonlabels", "choices"]
    poly = tasks[0]["annotations"][0]["result"][4]
    assert poly["value"]["points"][0] == [5.0, 81.25]  # (10, 130) px of 200 x 160, in percent
    assert poly["value"]["polygonlabels"] == ["scratch"]
    pred = tasks[0]["predictions"][0]
    assert pred["model_version"] == "yolo-test-1" and pred["score"] == pytest.approx(0.7)
    assert "predictions" not in label_studio.build_tasks(recs, TAX)[0]
    resolver = LabelResolver(TAX)
    back, report = label_studio.parse(tasks, resolver, source="ls.json")
    assert not report.failed and not report.skipped and not resolver.unknown
    assert compare_records(recs, back, atol=1e-9, min_iou=1.0, splits=True) == []
    exact = [
        s.almost_equal(b, atol=1e-9)
        for r, q in zip(recs, back, strict=True)
        for s, b in zip(r.instances.shapes, q.instances.shapes, strict=True)
    ]
    assert exact == [False, False, True, True, True]  # the brush shapes are traced pixel outlines
    for r, q in zip(recs, back, strict=True):
        if len(r.meta["predictions"]):
            assert q.meta["model_version"] == "yolo-test-1"
            assert np.allclose(q.meta["predictions"].scores, r.meta["predictions"].scores)


def test_several_model_versions_become_several_predictions() -> None:
    rec = tiny_records(TAX)[0]
    p = tiny_predictions(TAX)[0].instances
    m1, m2 = p[np.arange(len(p))], p[[0]]
    m1.data["model_version"] = ["m1"] * len(m1)
    m2.data["model_version"] = ["m2"]
    rec.meta["predictions"] = Instances.concat([m1, m2])
    (task,) = label_studio.build_tasks([rec], TAX, include_predictions=True)
    assert [
        (q["model_version"], len([r for r in q["result"] if r["type"].endswith("labels")]))
        for q in task["predictions"]
    ] == [("m1", 3), ("m2", 1)]
    ids = [r["id"] for q in task["predictions"] for r in q["result"]]
    assert len(set(ids)) == len(
        {(q["model_version"], r["id"]) for q in task["predictions"] for r in q["result"]}
    )


def _dent_rectangle(region_id: str, **value: float) -> dict:
    """A "dent" rectangle region on an 80×50 image; ``value`` in percent (x, y, width,
    height, rotation)."""
    return {
        "id": region_id,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": 80,
        "original_height": 50,
        "value": {**value, "rectanglelabels": ["dent"]},
    }


def test_parse_label_studio_export_shapes() -> None:
    """A task as Label Studio exports it: upload URL, several annotations, rectangles (rotated),
    a brush drawn with the SDK's own encoder, per-region choices, a cancelled annotation."""
    from label_studio_sdk.converter.brush import mask2rle

    mask = np.zeros((50, 80), dtype=np.uint8)
    mask[10:30, 20:60] = 255
    mask[15:20, 30:40] = 0
    task = {
        "id": 7,
        "data": {"image": "/data/upload/3/1a2b3c4d-car%20one.jpg"},
        "annotations": [
            {"id": 1, "was_cancelled": False, "result": []},
            {
                "id": 2,
                "was_cancelled": False,
                "result": [
                    _dent_rectangle("r1", x=10, y=20, width=25, height=40, rotation=0),
                    _dent_rectangle("r2", x=50, y=50, width=10, height=10, rotation=90),
                    {
                        "id": "b1",
                        "type": "brushlabels",
                        "from_name": "tag",
                        "to_name": "image",
                        "original_width": 80,
                        "original_height": 50,
                        "value": {"format": "rle", "rle": mask2rle(mask), "brushlabels": ["Hood"]},
                    },
                    {
                        "id": "b1",
                        "type": "choices",
                        "from_name": "severity",
                        "to_name": "image",
                        "value": {"choices": ["severe"]},
                    },
                    {
                        "id": "p9",
                        "type": "polygonlabels",
                        "from_name": "p",
                        "to_name": "image",
                        "original_width": 80,
                        "original_height": 50,
                        "value": {"points": [[0, 0], [10, 0]], "polygonlabels": ["dent"]},
                    },
                ],
            },
            {"id": 3, "was_cancelled": True, "result": []},
        ],
    }
    resolver = LabelResolver(TAX, {"Hood": "hood"})
    recs, report = label_studio.parse([task], resolver, source="export.json")
    (rec,) = recs
    assert rec.file_name == "car one.jpg" and (rec.width, rec.height) == (80, 50)
    inst = rec.instances
    assert [TAX.by_id(c).name for c in inst.class_ids] == ["dent", "dent", "hood"]
    assert inst.shapes[0].bbox.tolist() == [8.0, 10.0, 28.0, 30.0]
    # 8 x 5 px, rotated 90 degrees clockwise about its top-left corner (40, 25)
    assert np.allclose(inst.shapes[1].bbox, [35.0, 25.0, 40.0, 33.0])
    assert np.array_equal(inst.shapes[2].to_mask(50, 80), mask > 0) and inst.shapes[2].has_holes
    assert inst.attributes[2] == {"severity": "severe"}
    assert report.skipped == [
        "export.json: task 7 ('car one.jpg'): 2 annotations; the last one was used"
    ]
    assert (
        len(report.failed) == 1
        and "region p9" in report.failed[0]
        and "at least 3 points" in report.failed[0]
    )
    with pytest.raises(FormatError, match="JSON list of tasks"):
        label_studio.parse({"x": 1}, resolver, source="export.json")


def test_missing_image_reported(tmp_path: Path) -> None:
    tasks = label_studio.build_tasks(tiny_records(TAX)[:1], TAX)
    recs, report = label_studio.parse(
        tasks, LabelResolver(TAX), source="t.json", images_dir=tmp_path
    )
    assert recs == [] and "a.jpg" in report.skipped[0] and "does not exist" in report.skipped[0]


@pytest.mark.parametrize(
    "rel,map_name",
    [
        ("coco_car_damage/train/COCO_merged_annos.json", "coco_car_damage_map.json"),
        ("car_parts_dsmlr/trainingset/annotations.json", "dsmlr_map.json"),
    ],
)
def test_real_dataset_roundtrip(datasets_dir: Path, rel: str, map_name: str) -> None:
    recs, _ = coco.parse(
        json.loads((datasets_dir / rel).read_text()),
        LabelResolver(TAX, load_label_map(DATA / map_name)),
        source=rel,
    )
    tasks = json.loads(json.dumps(label_studio.build_tasks(recs, TAX)))
    back, report = label_studio.parse(tasks, LabelResolver(TAX), source="ls.json")
    assert not report.failed
    assert instance_count(back) == instance_count(recs)
    # polygons within float rounding; multi-part shapes are brush masks: IoU >= 0.99
    assert compare_records(recs, back, atol=1e-6, min_iou=0.99, attributes=False) == []


def test_real_via_roundtrip(datasets_dir: Path) -> None:
    from exports import via

    folder = datasets_dir / "car_damage_v0/customImages/train"
    recs, _ = via.parse(
        json.loads((folder / "via_region_data.json").read_text()),
        LabelResolver(TAX),
        source="via",
        images_dir=folder,
    )
    back, report = label_studio.parse(
        label_studio.build_tasks(recs, TAX), LabelResolver(TAX), source="ls"
    )
    assert not report.failed and compare_records(recs, back, atol=1e-6) == []


@pytest.mark.parametrize(
    "rel,base_url,expected",
    [
        ("media/ab.jpg", "", "/data/local-files/?d=media/ab.jpg"),
        ("claims/car 1/é&x.jpg", "", "/data/local-files/?d=claims/car%201/%C3%A9%26x.jpg"),
        (
            "media/ab.jpg",
            "https://photos.example.com/pb/",
            "https://photos.example.com/pb/media/ab.jpg",
        ),
        ("a#b?.png", "https://h.example", "https://h.example/a%23b%3F.png"),
        ("../outside.jpg", "", ValueError),  # resolved first: leads out of the root
        (".", "", ValueError),  # the root itself is no photo
    ],
)
def test_image_url_is_the_path_below_the_document_root(
    tmp_path: Path, rel: str, base_url: str, expected
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    if isinstance(expected, type):
        with pytest.raises(expected):
            label_studio.image_url(root / rel, root, base_url)
        return
    assert label_studio.image_url(root / rel, root, base_url) == expected
    # Label Studio's own reading of the URL (its SDK's) finds the same file again
    if not base_url:
        from label_studio_sdk._extensions.label_studio_tools.core.utils import io as ls_io

        saved = ls_io.LOCAL_FILES_DOCUMENT_ROOT
        ls_io.LOCAL_FILES_DOCUMENT_ROOT = str(root)
        try:
            assert ls_io.resolve_local_storage_file(expected) == str(root / rel)
        finally:
            ls_io.LOCAL_FILES_DOCUMENT_ROOT = saved
    # and our parser reads the file name back from it
    assert label_studio._file_name({"image": expected}) == Path(rel).name


def test_image_url_refuses_a_symlink_that_leads_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to(outside / "x.jpg")
    with pytest.raises(ValueError):
        label_studio.image_url(root / "link.jpg", root)
