"""The registered ``part_seg`` stage: the shared LRASPP segmenter
(:class:`models.semseg.stage.SemanticSegStage`) over the part classes, with what only parts
need: sided pairs settled by position, and two optional refinements.

Training follows a side experiment on this project's photos (mIoU 0.45 / mask AP50 0.52 after
10 minutes on 400 dsmlr photos on a 2-core CPU): whole photos squashed to ``size`` x ``size``;
flips swap sided classes (:meth:`core.taxonomy.Taxonomy.mirror_id`, as ALBERT and YOLO do).

``small_part_zoom`` (off by default) gives small components a second, zoomed look;
``bench/bench_part_seg.py --evaluate`` measured it, and a larger working size, below the plain
prediction on held-out dsmlr photos, so neither is on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.instances import Instances
from models.part_seg.config import PartSegConfig
from models.part_seg.postprocess import guided_filter, label_map_instances, small_part_windows
from models.registry import register_stage
from models.semseg.stage import SemanticSegStage


@register_stage("part_seg")
class PartSegStage(SemanticSegStage):
    config_class = PartSegConfig
    title = "LRASPP-MobileNetV3 part segmenter"
    primary_metrics = ("holdout.part.coco.AP50", "holdout.part.miou")
    #: the part model it replaces when it promotes: the promoted YOLO part model
    rival = "yolo_seg"
    pre_annotate_minimum = ("holdout.part.coco.AP50", 0.2)
    architecture = "LRASPP-MobileNetV3-Large (background + part classes)"
    eval_groups = ("part",)
    groups = ("part",)

    config: PartSegConfig

    def refine(self, image: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The zoomed second look at small parts and the guided filter, when switched on."""
        if self.config.small_part_zoom > 1:
            p = self._refine_small_parts(image, p)
        if self.config.refine_radius > 0:
            import cv2

            th, tw = p.shape[1:]
            grey = cv2.cvtColor(
                cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY
            )
            p = guided_filter(grey / 255.0, p, self.config.refine_radius, self.config.refine_eps)
        return p

    def map_instances(
        self, labels: np.ndarray, p: np.ndarray, feats: np.ndarray
    ) -> tuple[Instances, dict[str, Any]]:
        inst, conflicts = label_map_instances(
            labels,
            p,
            self.taxonomy,
            min_area_frac=self.config.min_area_frac,
            tolerance=self.config.tolerance,
            features=feats,
        )
        return inst, {"side_conflicts": conflicts}

    def _refine_small_parts(self, image: np.ndarray, p: np.ndarray) -> np.ndarray:
        """``p`` (traced size) with a zoomed second look averaged in around small parts
        (``small_part_zoom``): all the crops of a photo go through the network as one batch."""
        import torch
        import torch.nn.functional as F

        cfg = self.config
        th, tw = p.shape[1:]
        windows = small_part_windows(
            p.argmax(0),
            cfg.small_part_zoom,
            max_frac=cfg.small_part_max_frac,
            min_px=max(1.0, cfg.min_area_frac * th * tw),
            max_crops=cfg.small_part_max_crops,
        )
        if not windows:
            return p
        h, w = image.shape[:2]
        sy, sx = h / th, w / tw
        crops = [
            image[
                round(y0 * sy) : max(round(y1 * sy), round(y0 * sy) + 1),
                round(x0 * sx) : max(round(x1 * sx), round(x0 * sx) + 1),
            ]
            for y0, y1, x0, x1 in windows
        ]
        crop_probs, _ = self.probabilities(crops)
        total = p.copy()
        count = np.ones((th, tw), np.float32)
        for (y0, y1, x0, x1), cp in zip(windows, crop_probs, strict=True):
            up = F.interpolate(
                torch.from_numpy(cp)[None],
                size=(y1 - y0, x1 - x0),
                mode="bilinear",
                align_corners=False,
            )[0].numpy()
            total[:, y0:y1, x0:x1] += up
            count[y0:y1, x0:x1] += 1
        return total / count
