"""Small readers that turn a labelled folder into a :class:`models.base.TrainingSet`.

The project's importers (services/data_io/imports.py) are the general route into the database;
this module only reads plain COCO polygon files directly, which the tests and benchmarks
use on the real datasets without a database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from core.geometry import GeometryError, Polygon, Shape, as_ring
from core.instances import Instances
from core.records import ImageRecord
from core.taxonomy import Taxonomy, default_taxonomy
from models.data import TrainingSet

#: car_parts_dsmlr part names -> project taxonomy names.
DSMLR_LABEL_MAP: dict[str, str] = {
    "back_bumper": "rear_bumper",
    "back_glass": "rear_windshield",
    "back_left_door": "rear_left_door",
    "back_left_light": "left_taillight",
    "back_right_door": "rear_right_door",
    "back_right_light": "right_taillight",
    "front_bumper": "front_bumper",
    "front_glass": "front_windshield",
    "front_left_door": "front_left_door",
    "front_left_light": "left_headlight",
    "front_right_door": "front_right_door",
    "front_right_light": "right_headlight",
    "hood": "hood",
    "left_mirror": "left_mirror",
    "right_mirror": "right_mirror",
    "tailgate": "tailgate",
    "trunk": "trunk",
    "wheel": "wheel",
}

#: car_damage_bilgi's Turkish damage names -> project taxonomy names. ``car`` is Roboflow's
#: parent category, which no annotation uses; it maps to nothing.
BILGI_LABEL_MAP: dict[str, str] = {
    "cizik": "scratch",  # scratch
    "gocuk": "dent",  # dent
    "kirik-kayip": "missingpart",  # broken or missing part
    "astar": "scrape",  # paint worn down to the primer: an abrasion
    "far_hasar": "brokenlight",  # damaged headlight
    "cam_catlagi": "brokenglass",  # cracked glass
    "airbag": "damage",  # a deployed airbag: no damage type of its own
    "kaput_hasar": "deformation",  # a damaged (crumpled) bonnet
}


def coco_training_set(
    json_path: str | Path,
    images_dir: str | Path,
    *,
    taxonomy: Taxonomy | None = None,
    label_map: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> TrainingSet:
    """Read a COCO polygon file; categories not in the taxonomy (after ``label_map``) are dropped.

    Images are kept in file order; ``limit`` keeps the first N images that have instances.
    Each record's ``meta["path"]`` is the absolute image path.
    """
    taxonomy = taxonomy or default_taxonomy()
    label_map = dict(label_map or {})
    data = json.loads(Path(json_path).read_text())
    cat_to_id: dict[int, int] = {}
    for c in data["categories"]:
        cls = taxonomy.get(label_map.get(c["name"], c["name"]))
        if cls is not None:
            cat_to_id[c["id"]] = cls.id
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        if a.get("category_id") in cat_to_id and isinstance(a.get("segmentation"), list):
            by_image.setdefault(a["image_id"], []).append(a)
    records: list[ImageRecord] = []
    for im in data["images"]:
        anns = by_image.get(im["id"], [])
        shapes, ids = [], []
        for a in anns:
            polys = []
            for seg in a["segmentation"]:
                try:
                    polys.append(Polygon(as_ring(np.asarray(seg, dtype=np.float64).reshape(-1, 2))))
                except (GeometryError, ValueError):
                    continue
            if polys:
                shapes.append(Shape(tuple(polys)))
                ids.append(cat_to_id[a["category_id"]])
        if not shapes:
            continue
        path = (Path(images_dir) / im["file_name"]).resolve()
        records.append(
            ImageRecord(
                file_name=str(path),
                width=int(im["width"]),
                height=int(im["height"]),
                instances=Instances(shapes=shapes, class_ids=np.asarray(ids)),
                split="train",
                meta={"path": str(path)},
            )
        )
        if limit is not None and len(records) >= limit:
            break
    return TrainingSet(records, taxonomy)


def dsmlr_training_set(datasets_dir: str | Path, limit: int | None = None) -> TrainingSet:
    """The car_parts_dsmlr training set (400 photos, 512x512, 18 part classes)."""
    root = Path(datasets_dir) / "car_parts_dsmlr" / "trainingset"
    return coco_training_set(
        root / "annotations.json", root / "JPEGImages", label_map=DSMLR_LABEL_MAP, limit=limit
    )


def bilgi_training_set(
    datasets_dir: str | Path, split: str = "train", limit: int | None = None
) -> TrainingSet:
    """The car_damage_bilgi set (1491 train + 492 valid photos, 640x640, 8 damage types)."""
    root = Path(datasets_dir) / "car_damage_bilgi" / split
    return coco_training_set(
        root / "_annotations.coco.json", root, label_map=BILGI_LABEL_MAP, limit=limit
    )
