"""The formats' own tools judge our exports: pycocotools, Ultralytics and label-studio-sdk."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.records import ImageRecord, LabelResolver, load_label_map
from core.taxonomy import default_taxonomy
from exports import coco, label_studio, yolo
from exports.compare import instance_count
from exports.synthetic import random_records, tiny_records

TAX = default_taxonomy()
DATA = Path(__file__).parent / "data"


def _real(datasets_dir: Path, rel: str, map_name: str) -> list[ImageRecord]:
    recs, _ = coco.parse(
        json.loads((datasets_dir / rel).read_text()),
        LabelResolver(TAX, load_label_map(DATA / map_name)),
        source=rel,
    )
    return recs


def _cocoeval_segm_ap(gt_path: Path) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dets = []
        for ann in gt.dataset["annotations"]:
            rle = gt.annToRLE(ann)
            rle = {
                "size": rle["size"],
                "counts": rle["counts"].decode()
                if isinstance(rle["counts"], bytes)
                else rle["counts"],
            }
            dets.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": ann["category_id"],
                    "segmentation": rle,
                    "score": 1.0,
                }
            )
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.mark.parametrize("which", ["synthetic", "coco_car_damage", "car_parts_dsmlr"])
def test_pycocotools_loads_evaluates_and_rasterises_like_us(
    datasets_dir: Path, tmp_path: Path, which: str
) -> None:
    from pycocotools.coco import COCO

    if which == "synthetic":
        recs = tiny_records(TAX) + random_records(TAX, 20, 100, radius=(60, 120), seed=3)
    elif which == "coco_car_damage":
        recs = _real(
            datasets_dir, "coco_car_damage/train/COCO_merged_annos.json", "coco_car_damage_map.json"
        )
    else:
        recs = _real(datasets_dir, "car_parts_dsmlr/trainingset/annotations.json", "dsmlr_map.json")
    path = tmp_path / "export.json"
    path.write_text(json.dumps(coco.build(recs, TAX)))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
    assert len(gt.getImgIds()) == len(recs) and len(gt.getAnnIds()) == instance_count(recs)
    assert _cocoeval_segm_ap(path) == pytest.approx(1.0)

    ious = []
    ann_iter = iter(gt.dataset["annotations"])
    for r in recs:
        for shape in r.instances.shapes:
            ann = next(ann_iter)
            theirs = gt.annToMask(ann).astype(bool)
            ours = shape.to_mask(r.height, r.width)
            ious.append((theirs & ours).sum() / max((theirs | ours).sum(), 1))
    # core.geometry rasterises with pycocotools' own rule, so masks agree per instance.
    assert min(ious) >= 0.99, f"worst instance IoU {min(ious):.4f}"


def _small_yolo_export(datasets_dir: Path, out: Path) -> tuple[list[ImageRecord], Path]:
    recs = _real(datasets_dir, "car_parts_dsmlr/trainingset/annotations.json", "dsmlr_map.json")[
        :12
    ]
    folder = datasets_dir / "car_parts_dsmlr/trainingset/JPEGImages"
    for i, r in enumerate(recs):
        r.meta["path"] = str(folder / r.file_name)
        r.split = "val" if i % 4 == 0 else "train"
    # one two-part shape, one shape with a hole: Ultralytics must read the merged rings
    img = Image.new("RGB", (96, 64), (40, 40, 40))
    img.save(out.parent / "synthetic.png")
    synth = tiny_records(TAX)[0]
    synth.instances = synth.instances.__class__(
        [s.scaled(0.48, 0.4) for s in synth.instances.shapes], synth.instances.class_ids
    )
    synth.width, synth.height, synth.file_name = 96, 64, "synthetic.png"
    synth.meta["path"] = str(out.parent / "synthetic.png")
    recs.append(synth)
    return recs, yolo.write(recs, TAX, out, group="part").data_yaml


def test_ultralytics_reads_and_trains_on_yolo_export(
    datasets_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    import torch
    from ultralytics import YOLO
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    torch.set_num_threads(2)
    recs, data_yaml = _small_yolo_export(datasets_dir, tmp_path / "ds")
    data = check_det_dataset(str(data_yaml))
    assert data["nc"] == 61 and data["names"][0] == "front_bumper"
    for split in ("train", "val"):
        ds = YOLODataset(img_path=data[split], data=data, task="segment", augment=False)
        expected = sum(
            int(np.isin(r.instances.class_ids, [c.id for c in TAX.group("part")]).sum())
            for r in recs
            if r.split == split
        )
        assert sum(len(lb["cls"]) for lb in ds.labels) == expected > 0
        assert sum(len(lb["segments"]) for lb in ds.labels) == expected
    model = YOLO("yolov8n-seg.yaml")
    model.train(
        data=str(data_yaml),
        epochs=1,
        imgsz=64,
        device="cpu",
        workers=0,
        plots=False,
        batch=4,
        project=str(tmp_path / "runs"),
        name="t",
        verbose=False,
        amp=False,
        val=True,
    )
    assert (tmp_path / "runs/t/weights/last.pt").is_file()


def test_label_studio_sdk_accepts_config_and_converts_export(
    datasets_dir: Path, tmp_path: Path
) -> None:
    from label_studio_sdk.converter import Converter
    from label_studio_sdk.label_interface import LabelInterface

    config = label_studio.labeling_config(TAX)
    li = LabelInterface(config)
    polygon = li.get_control("polygon")
    assert polygon.tag == "PolygonLabels" and len(polygon.labels) == 94
    assert li.get_control("brush").tag == "BrushLabels"
    assert {"severity", "occluded", "fake", "fake_note", "part_id"} <= set(li._controls)

    recs = tiny_records(TAX) + _real(
        datasets_dir, "coco_car_damage/val/COCO_merged_annos.json", "coco_car_damage_map.json"
    )
    tasks = label_studio.build_tasks(
        recs, TAX, image_url_fn=lambda r: f"/data/local-files/?d={r.file_name}"
    )
    for i, t in enumerate(tasks):  # as a Label Studio export carries them
        t["id"] = i + 1
        t["annotations"][0].update(id=i + 1, was_cancelled=False)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    results = [r for t in tasks for r in t["annotations"][0]["result"]]
    n_polygon_regions = sum(r["type"] == "polygonlabels" for r in results)
    n_parts = sum(len(s.polygons) for r in recs for s in r.instances.shapes)
    conv = Converter(config=config, project_dir=str(tmp_path), download_resources=False)
    with contextlib.redirect_stdout(io.StringIO()):
        conv.convert(str(export), str(tmp_path / "coco"), "COCO", is_dir=False)
        conv.convert(str(export), str(tmp_path / "brush"), "BRUSH_TO_COCO", is_dir=False)
    out = json.loads((tmp_path / "coco/result.json").read_text())
    # its COCO converter reads polygon regions (it skips brushes and per-region choices)
    assert len(out["annotations"]) == n_polygon_regions == instance_count(recs) - 2
    assert {c["name"] for c in out["categories"]} >= {"dent", "damage", "scratch"}
    brush = json.loads((tmp_path / "brush/result_coco.json").read_text())
    # its brush converter reads both, one annotation per outer contour: every part of every shape
    assert len(brush["annotations"]) == n_parts
