"""YOLO parts -> polygon crops -> ResNet34 P(damaged), after the YOLOv12 + ResNet34 POC.

Returns the YOLO part instances with ``probs["damaged"]`` ``(N, 2)`` = [undamaged, damaged]
(the one place P(damaged) is kept: ``probs["damaged"][:, 1]``). YOLO's
``probs["part"]``, per-object ``embeddings`` and ``image_embedding`` (see models/yolo_seg.py)
pass through unchanged: they describe the whole photo and every part YOLO found, while the
ResNet sees only the crops. The artifact is one file holding both sub-stages' payloads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.instances import ImageResult
from core.taxonomy import Taxonomy, default_taxonomy
from models.base import (
    CheckpointError,
    OutPath,
    StageBase,
    StageConfig,
    TrainResult,
    load_checkpoint,
    save_checkpoint,
    taxonomy_counts,
)
from models.data import Progress, TrainingSet, check_images
from models.part_classifier import PartClassifierConfig, PartClassifierStage
from models.registry import register_stage
from models.yolo_seg import YoloSegConfig, YoloSegStage


@dataclass
class PipelineConfig(StageConfig):
    yolo: dict[str, Any] | None = None
    classifier: dict[str, Any] | None = None

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}, "small": {}, "base": {}}

    def sub_configs(self) -> tuple[YoloSegConfig, PartClassifierConfig]:
        y = YoloSegConfig.from_preset(self.preset, **{"device": self.device, **(self.yolo or {})})
        c = PartClassifierConfig.from_preset(
            self.preset, **{"device": self.device, **(self.classifier or {})}
        )
        if self.epochs != 1 and not (self.yolo or {}).get("epochs"):
            y.epochs = self.epochs
        if self.epochs != 1 and not (self.classifier or {}).get("epochs"):
            c.epochs = self.epochs
        return y, c


@register_stage("pipeline")
class PipelineStage(StageBase):
    config_class = PipelineConfig
    title = "YOLO parts + ResNet34 damaged part"
    primary_metrics = ("holdout.part.macro_f1",)
    embedding_rank = 2
    pre_annotate_minimum = ("holdout.part.coco.AP50", 0.2)
    built_from = ("yolo_seg", "part_classifier")

    def __init__(
        self,
        config: PipelineConfig | None = None,
        taxonomy: Taxonomy | None = None,
        yolo: YoloSegStage | None = None,
        classifier: PartClassifierStage | None = None,
    ):
        self.config = config or PipelineConfig.from_preset("tiny")
        self.taxonomy = taxonomy or default_taxonomy()
        ycfg, ccfg = self.config.sub_configs()
        self.yolo = yolo or YoloSegStage(ycfg, self.taxonomy)
        self.classifier = classifier or PartClassifierStage(ccfg, self.taxonomy)

    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        """YOLO parts, then P(damaged) per part. On the CPU, with several images, the ResNet
        work of image i runs in a worker thread while YOLO does image i+1: Ultralytics runs
        its CPU predict on ``cpu_count - 1`` threads (one on a 2-core machine), so the other
        core would otherwise sit idle. Once YOLO is done, this thread takes over the images
        the worker has not started, from the last one back. Results are identical to the
        sequential order."""
        check_images(images)
        if len(images) < 2 or self.classifier.device.type != "cpu":
            return self._finish(images, self.yolo.predict(images), None)
        from concurrent.futures import ThreadPoolExecutor

        results: list[ImageResult] = []
        items, futures = [], []
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-classifier")
        try:
            for im in images:
                res = self.yolo.predict([im])
                results.extend(res)
                items.append([(im, res[0].instances)])
                futures.append(pool.submit(self.classifier.classify_many, items[-1]))
            probs: list[np.ndarray] = [np.empty(0)] * len(images)
            for k in reversed(range(len(images))):
                taken = futures[k].cancel()  # True: the worker had not started it
                probs[k] = (
                    self.classifier.classify_many(items[k]) if taken else futures[k].result()
                )[0]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after an error: drop queued work
        return self._finish(images, results, probs)

    def _finish(
        self,
        images: list[np.ndarray],
        results: list[ImageResult],
        probs: list[np.ndarray] | None,
    ) -> list[ImageResult]:
        if probs is None:
            # every part crop of every image in one batched ResNet forward
            probs = self.classifier.classify_many(
                [(im, r.instances) for im, r in zip(images, results, strict=True)]
            )
        for res, p in zip(results, probs, strict=True):
            inst = res.instances
            inst.probs["damaged"] = p.astype(np.float32)
            res.meta["stage"] = self.name
        return results

    def fit(
        self,
        dataset: TrainingSet,
        cfg: PipelineConfig,
        progress: Progress | None,
        out_path: OutPath,
    ) -> TrainResult:
        import tempfile

        ycfg, ccfg = cfg.sub_configs()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            ry = self.yolo.train(dataset, ycfg, progress, out_path=Path(tmp) / "y.pt")
            rc = self.classifier.train(dataset, ccfg, progress, out_path=Path(tmp) / "c.pt")
        metrics = {
            "yolo_seg": ry.metrics,
            "part_classifier": rc.metrics,
            "train_seconds": time.perf_counter() - t0,
        }
        path = Path(out_path) if out_path else Path(f"{self.name}.pt")
        self.save(path)
        return TrainResult(path, metrics)

    def save(self, path: str | Path) -> Path:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            y = self.yolo.save(Path(tmp) / "y.pt").read_bytes()
            c = self.classifier.save(Path(tmp) / "c.pt").read_bytes()
        return save_checkpoint(
            path,
            stage=self.name,
            config=self.config,
            class_counts=taxonomy_counts(self.taxonomy),
            state_dict={"yolo_seg": y, "part_classifier": c},
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        taxonomy: Taxonomy | None = None,
        device: str = "auto",
        cpu_int8: bool | None = None,
        **_: Any,
    ) -> PipelineStage:
        """``cpu_int8``: see :meth:`PartClassifierStage.load`."""
        import tempfile

        taxonomy = taxonomy or default_taxonomy()
        payload = load_checkpoint(path, stage=cls.name, class_counts=taxonomy_counts(taxonomy))
        sd = payload["state_dict"]
        if not isinstance(sd, dict) or not {"yolo_seg", "part_classifier"} <= set(sd):
            raise CheckpointError(
                f"model file {path} lacks the yolo_seg or part_classifier part; retrain the pipeline"
            )
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "y.pt").write_bytes(sd["yolo_seg"])
            (Path(tmp) / "c.pt").write_bytes(sd["part_classifier"])
            y = YoloSegStage.load(Path(tmp) / "y.pt", taxonomy, device)
            c = PartClassifierStage.load(Path(tmp) / "c.pt", taxonomy, device, cpu_int8=cpu_int8)
        cfg = PipelineConfig.from_dict({**payload["config"], "device": device})
        return cls(cfg, taxonomy, yolo=y, classifier=c)
