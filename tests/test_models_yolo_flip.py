"""Horizontal flips in YOLO training swap left and right part classes."""

from __future__ import annotations

import numpy as np
import pytest

from core.geometry import Shape
from core.instances import Instances
from core.records import ImageRecord
from core.taxonomy import default_taxonomy


def test_mirror_table_follows_the_exported_names():
    from models.yolo_augment import yolo_mirror_table

    names = {0: "hood", 1: "front_left_door", 2: "front_right_door", 3: "left_mirror"}
    # right_mirror is not among the names: the left mirror stays itself
    assert yolo_mirror_table(names, default_taxonomy()).tolist() == [0, 2, 1, 3]


@pytest.mark.timeout(120)
def test_flipped_training_samples_carry_the_other_side(tmp_path):
    from PIL import Image
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    from exports.yolo import write as write_yolo
    from models.yolo_augment import use_sided_flips, yolo_mirror_table

    tax = default_taxonomy()
    left, hood = tax.by_name("front_left_door"), tax.by_name("hood")
    records = []
    for i in range(2):
        path = tmp_path / f"car{i}.png"
        Image.fromarray(np.full((64, 96, 3), 40 * (i + 1), np.uint8)).save(path)
        door = Shape.from_ring(np.array([[4, 8], [30, 8], [30, 56], [4, 56]], float))
        bonnet = Shape.from_ring(np.array([[50, 10], [90, 10], [90, 30], [50, 30]], float))
        records.append(
            ImageRecord(
                file_name=str(path),
                width=96,
                height=64,
                instances=Instances(shapes=[door, bonnet], class_ids=np.array([left.id, hood.id])),
                split="train",
                meta={"path": str(path)},
            )
        )
    export = write_yolo(records, tax, tmp_path / "data", group="part")
    names = export.names
    table = yolo_mirror_table(names, tax)
    data = check_det_dataset(str(export.data_yaml))
    cfg = get_cfg(
        overrides={
            "task": "segment",
            "imgsz": 96,
            "mosaic": 0.0,
            "fliplr": 1.0,
            "degrees": 0.0,
            "translate": 0.0,
            "scale": 0.0,
            "hsv_h": 0.0,
            "hsv_s": 0.0,
            "hsv_v": 0.0,
        }
    )

    def sample_classes(sided: bool) -> dict[str, float]:
        ds = build_yolo_dataset(cfg, data["train"], 2, data, mode="train")
        if sided:
            use_sided_flips(ds, table)
            ds.close_mosaic(cfg)  # rebuilt transforms keep swapping
        item = ds[0]
        xs = item["bboxes"][:, 0].numpy()  # normalised box centres, after the flip
        return {names[int(c)]: float(x) for c, x in zip(item["cls"].flatten(), xs, strict=True)}

    plain, sided = sample_classes(False), sample_classes(True)
    # Ultralytics alone: the door moved to the right half but is still called the left door
    assert plain["front_left_door"] > 0.5
    # ours: the mirrored door is a right door, where a right door would be; the hood is the hood
    assert "front_left_door" not in sided and sided["front_right_door"] > 0.5
    assert sided["hood"] < 0.5
