"""Left/right-aware horizontal flips for Ultralytics training.

Ultralytics' ``fliplr`` mirrors the photo and the polygons but keeps each class id, so a flipped
``front_left_door`` would be taught as a left door that now sits where right doors do. Our part
classes have sides, so a flip must also swap ``left`` and ``right`` classes
(:meth:`core.taxonomy.Taxonomy.mirror_id`). :func:`sided_trainer` returns a segmentation trainer
whose datasets do that; everything else about Ultralytics' augmentation stays as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.taxonomy import Taxonomy


def yolo_mirror_table(names: dict[int, str], taxonomy: Taxonomy) -> np.ndarray:
    """``(C,)`` int64: YOLO class index -> the index of its mirrored class (itself when the
    class has no side or its other side is not among ``names``)."""
    index = {name: i for i, name in names.items()}
    table = np.arange(len(names), dtype=np.int64)
    for i, name in names.items():
        c = taxonomy.get(name)
        if c is not None:
            table[i] = index.get(taxonomy.by_id(taxonomy.mirror_id(c.id)).name, i)
    return table


def _sided_flip_class():
    from ultralytics.data.augment import RandomFlip

    class SidedRandomFlip(RandomFlip):
        """Ultralytics' horizontal flip that also swaps sided classes through ``table``."""

        def __init__(self, table: np.ndarray, p: float = 0.5, flip_idx: Any = None) -> None:
            super().__init__(p=p, direction="horizontal", flip_idx=flip_idx)
            self.table = table

        def apply_instances(self, labels: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
            labels = super().apply_instances(labels, params)
            cls = labels.get("cls")
            if params["flip"] and cls is not None and len(cls):
                labels["cls"] = self.table[cls.astype(np.int64)].astype(cls.dtype)
            return labels

    return SidedRandomFlip


def use_sided_flips(dataset: Any, table: np.ndarray) -> None:
    """Make ``dataset`` (an Ultralytics YOLODataset) swap sided classes whenever it flips, in
    the transforms it has now and in those it rebuilds later (``close_mosaic`` rebuilds them)."""
    from ultralytics.data.augment import RandomFlip

    sided = _sided_flip_class()
    build = dataset.build_transforms

    def swap_flips(transforms):
        for k, t in enumerate(getattr(transforms, "transforms", [])):
            if type(t) is RandomFlip and t.direction == "horizontal":
                transforms.transforms[k] = sided(table, p=t.p, flip_idx=t.flip_idx)
        return transforms

    dataset.build_transforms = lambda hyp: swap_flips(build(hyp))
    swap_flips(dataset.transforms)


def sided_trainer(table: np.ndarray):
    """An Ultralytics ``SegmentationTrainer`` subclass whose training set flips with ``table``."""
    from ultralytics.models.yolo.segment import SegmentationTrainer

    class SidedSegmentationTrainer(SegmentationTrainer):
        def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None):
            dataset = super().build_dataset(img_path, mode, batch)
            if mode == "train":
                use_sided_flips(dataset, table)
            return dataset

    return SidedSegmentationTrainer
