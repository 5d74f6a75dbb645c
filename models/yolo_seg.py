"""Ultralytics instance segmentation of car parts, trained from the project's YOLO export.

The architecture comes from a ``.yaml`` (random weights; ``yolo11n-seg.yaml`` on the CPU)
or a local ``.pt`` the user downloaded; Ultralytics is put in offline mode so it never
tries to download anything. The trained Ultralytics checkpoint is carried inside the
project's single-file artifact (bytes), with the YOLO-index -> taxonomy-id table.

``probs["part"]`` is ``(N, n_part)``: YOLO's per-class sigmoid scores of each kept detection,
read from the head at the anchors NMS kept, normalised to sum to 1; ``scores`` is the raw
winning score. ``embeddings`` are Ultralytics' per-object features ``(N, D)`` float32.
``image_embedding`` is 1-D float32: each feature map the head reads (one per stride),
average-pooled over the photo's own cells (letterbox padding excluded) and concatenated
(64 + 128 + 256 = 448 values for yolo11n-seg); taken from the same forward.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.geometry import GeometryError, Polygon, Shape, as_ring
from core.instances import ImageResult, Instances
from core.taxonomy import Taxonomy, default_taxonomy
from models.base import (
    CheckpointError,
    OutPath,
    StageBase,
    StageConfig,
    TrainResult,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    taxonomy_counts,
)
from models.data import Progress, TrainingSet, check_images
from models.registry import register_stage


def _total_loss(tloss) -> float | None:
    """The trainer's running mean loss summed over its terms (a tensor in older
    Ultralytics releases, a dict of tensors in newer ones)."""
    if tloss is None:
        return None
    values = tloss.values() if isinstance(tloss, dict) else [tloss]
    return float(sum(float(v.sum()) if hasattr(v, "sum") else float(v) for v in values))


def offline_ultralytics() -> None:
    """Never reach the network: no hub, no font or weight downloads, no telemetry."""
    os.environ["YOLO_OFFLINE"] = "1"
    # No pip installs at run time either (Ultralytics would try, e.g. for a HEIF plugin).
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    from ultralytics.utils import SETTINGS

    if SETTINGS.get("sync"):
        SETTINGS.update({"sync": False})


@dataclass
class YoloSegConfig(StageConfig):
    model: str = "yolo11n-seg.yaml"
    imgsz: int = 128
    conf: float = 0.25
    max_det: int = 300
    group: str = "part"
    #: Ultralytics' "auto" ignores lr0/momentum and, for schedules under 10k iterations
    #: (every CPU round), picks AdamW at ~0.00015 for 61 classes, which barely moves a
    #: scratch model; naming the optimizer makes lr0 and momentum the ones that train
    optimizer: str = "SGD"
    lr0: float = 0.01
    lrf: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    cos_lr: bool = False
    mosaic: float = 0.0
    degrees: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    #: flips swap left/right classes (models/yolo_augment.py), so the POC's 0.5 is safe
    fliplr: float = 0.5
    batch_size: int = 8
    epochs: int = 1

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"max_det": 20},
        "small": {"imgsz": 320, "epochs": 30, "mosaic": 1.0, "cos_lr": True, "warmup_epochs": 3.0},
        # the POC's settings (YOLOv12-m-seg at 640)
        "base": {
            "model": "yolo12m-seg.yaml",
            "imgsz": 640,
            "epochs": 100,
            "batch_size": 16,
            "lr0": 0.01,
            "lrf": 0.001,
            "momentum": 0.937,
            "weight_decay": 5e-4,
            "warmup_epochs": 3.0,
            "cos_lr": True,
            "mosaic": 1.0,
            "degrees": 15.0,
            "hsv_h": 0.015,
            "hsv_s": 0.7,
            "hsv_v": 0.4,
            "fliplr": 0.5,
        },
    }


def _build_yolo(model: str):
    offline_ultralytics()
    from ultralytics import YOLO

    if model.endswith(".pt") and not Path(model).is_file():
        raise CheckpointError(
            f"YOLO weights {model} do not exist; download them yourself and give the local path, "
            f"or use an architecture .yaml such as yolo11n-seg.yaml to train from scratch"
        )
    return YOLO(model, task="segment")


@register_stage("yolo_seg")
class YoloSegStage(StageBase):
    config_class = YoloSegConfig
    title = "YOLO parts"
    primary_metrics = ("holdout.part.coco.AP50", "holdout.part.macro_f1")
    embedding_rank = 1
    round_default = True
    pre_annotate_minimum = ("holdout.part.coco.AP50", 0.2)
    #: a local Ultralytics .pt (e.g. COCO yolo11m-seg.pt) to fine-tune; classes that do not
    #: fit are re-made by Ultralytics
    start_weight_fields = ("model",)
    start_weight_kind = "yolo_seg"
    warm_startable = True

    def warm_start(self, path: str | Path) -> None:
        from core.config import get_settings
        from core.files import write_bytes_atomic

        payload, data = _read_checkpoint(path, self.taxonomy)
        # Ultralytics reads a .pt from disk: keep the parent's weights where its trainer finds them
        start = get_settings().cache_dir / "warm" / f"{Path(path).stem}.pt"
        write_bytes_atomic(start, data)
        self.yolo = _build_yolo(str(start))
        self.class_ids = list(payload["extra"].get("class_ids", self.class_ids))

    def __init__(self, config: YoloSegConfig | None = None, taxonomy: Taxonomy | None = None):
        self.config = config or YoloSegConfig.from_preset("tiny")
        self.taxonomy = taxonomy or default_taxonomy()
        self.class_ids = [c.id for c in self.taxonomy.group(self.config.group)]
        # "0,1" (a GPU list) goes to Ultralytics as is: it runs its own multi-GPU DDP
        self._gpu_list = "," in str(self.config.device)
        self.device, _ = resolve_device("cuda" if self._gpu_list else self.config.device)
        self.yolo = _build_yolo(self.config.model)
        # a fresh .yaml architecture has 80 outputs until training resizes its head to our
        # classes; indices beyond ours are dropped in _to_result
        self._pt_bytes: bytes | None = None

    def _device_arg(self) -> str:
        if getattr(self, "_gpu_list", False):
            return str(self.config.device)
        return "cpu" if self.device.type == "cpu" else str(self.device.index or 0)

    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        check_images(images)
        bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]
        kw = dict(
            imgsz=self.config.imgsz,
            conf=self.config.conf,
            device=self._device_arg(),
            verbose=False,
            retina_masks=False,
            max_det=self.config.max_det,
        )
        if self.yolo.predictor is None:
            self.yolo.predict(bgr[:1], **kw)  # creates the predictor the hooks attach to
        tap = _HeadTap(self.yolo.predictor)
        try:
            results = self.yolo.predict(bgr, **kw)
        finally:
            tap.remove()
        out = []
        for b, r in enumerate(results):
            res = self._to_result(r, tap.class_scores(b))
            res.image_embedding = tap.image_embedding(b, r.orig_shape)
            out.append(res)
        return out

    def _to_result(self, r, class_scores: np.ndarray | None = None) -> ImageResult:
        """``class_scores``: ``(K, nc)`` per-class sigmoid scores of the K kept detections."""
        shapes, cids, scores, boxes, rows = [], [], [], [], []
        if r.masks is not None and r.boxes is not None:
            for j, (ring, cls, conf, box) in enumerate(
                zip(
                    r.masks.xy,
                    r.boxes.cls.cpu().numpy(),
                    r.boxes.conf.cpu().numpy(),
                    r.boxes.xyxy.cpu().numpy(),
                    strict=False,
                )
            ):
                try:
                    shape = Shape((Polygon(as_ring(np.asarray(ring, dtype=np.float64))),))
                except (GeometryError, ValueError):
                    continue  # a degenerate outline (fewer than 3 points): nothing to show
                k = int(cls)
                if not 0 <= k < len(self.class_ids):
                    continue
                shapes.append(shape)
                cids.append(self.class_ids[k])
                scores.append(float(conf))
                boxes.append(box)
                rows.append(j)
        probs, emb = {}, None
        n_ours = len(self.class_ids)
        if (
            class_scores is not None
            and len(class_scores) == len(r.boxes or [])
            and class_scores.shape[1] >= n_ours
        ):
            # independent per-class sigmoids, normalised to sum to 1 so they serve as the
            # head's probability vector; ``scores`` keeps the raw winning score
            cs = np.clip(class_scores[rows, :n_ours], 1e-12, None)
            probs[self.config.group] = (cs / cs.sum(1, keepdims=True)).astype(np.float32)
        feats = getattr(r, "feats", None)
        if feats is not None and len(feats) == len(r.boxes or []) and len(rows):
            f = feats[rows]
            emb = np.asarray(f.float().cpu().numpy() if hasattr(f, "cpu") else f)
        inst = Instances(
            shapes=shapes,
            class_ids=np.asarray(cids, dtype=np.int64),
            scores=np.asarray(scores),
            boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            probs=probs,
            embeddings=emb if emb is not None and emb.ndim == 2 else None,
        )
        return ImageResult(inst, meta={"stage": self.name})

    def fit(
        self, dataset: TrainingSet, cfg: YoloSegConfig, progress: Progress | None, out_path: OutPath
    ) -> TrainResult:
        from exports.yolo import write as write_yolo

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="pb-yolo-") as tmp:
            records = [r for r in dataset.records]
            for r in records:  # Ultralytics needs a val split; reuse train when the set has none
                r.split = r.split if r.split in ("train", "val") else "train"
            if not any(r.split == "val" for r in records):
                records = records + [
                    _as_split(r, "val") for r in records[: max(1, len(records) // 5)]
                ]
            export = write_yolo(records, dataset.taxonomy, Path(tmp) / "data", group=cfg.group)
            if progress:
                self.yolo.add_callback(
                    "on_train_epoch_end",
                    lambda tr: progress(
                        tr.epoch + 1,
                        cfg.epochs,
                        {
                            "epoch": tr.epoch + 1,
                            "loss": _total_loss(tr.tloss),
                        },
                    ),
                )
            from models.yolo_augment import sided_trainer, yolo_mirror_table

            mirror = yolo_mirror_table(export.names, dataset.taxonomy)
            self.yolo.train(
                trainer=sided_trainer(mirror),
                data=str(export.data_yaml),
                epochs=cfg.epochs,
                imgsz=cfg.imgsz,
                batch=cfg.batch_size,
                device=self._device_arg(),
                workers=cfg.num_workers,
                project=str(Path(tmp) / "runs"),
                name="run",
                exist_ok=True,
                plots=False,
                verbose=False,
                seed=cfg.seed,
                optimizer=cfg.optimizer,
                lr0=cfg.lr0,
                lrf=cfg.lrf,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                warmup_epochs=cfg.warmup_epochs,
                cos_lr=cfg.cos_lr,
                mosaic=cfg.mosaic,
                degrees=cfg.degrees,
                hsv_h=cfg.hsv_h,
                hsv_s=cfg.hsv_s,
                hsv_v=cfg.hsv_v,
                fliplr=cfg.fliplr,
                amp=self.device.type == "cuda",
                pretrained=False,
                val=True,
                save=True,
            )
            run = Path(tmp) / "runs" / "run" / "weights"
            best = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
            self._pt_bytes = best.read_bytes()
            metrics = {}
            rm = getattr(self.yolo.trainer, "metrics", None) or {}
            for k, v in dict(rm).items():
                try:
                    metrics[k.replace("metrics/", "")] = float(v)
                except (TypeError, ValueError):
                    pass
            self.yolo = _build_yolo(str(best))
        metrics["train_seconds"] = time.perf_counter() - t0
        path = Path(out_path) if out_path else Path(f"{self.name}.pt")
        self.save(path)
        return TrainResult(path, metrics)

    def save(self, path: str | Path) -> Path:
        if self._pt_bytes is None:
            with tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / "m.pt"
                self.yolo.save(str(p))
                self._pt_bytes = p.read_bytes()
        return save_checkpoint(
            path,
            stage=self.name,
            config=self.config,
            class_counts=taxonomy_counts(self.taxonomy),
            state_dict={"ultralytics_pt": self._pt_bytes},
            extra={"class_ids": self.class_ids},
        )

    @classmethod
    def load(
        cls, path: str | Path, taxonomy: Taxonomy | None = None, device: str = "auto", **_: Any
    ) -> YoloSegStage:
        taxonomy = taxonomy or default_taxonomy()
        payload, data = _read_checkpoint(path, taxonomy)
        cfg = YoloSegConfig.from_dict({**payload["config"], "device": device})
        fd, tmp = tempfile.mkstemp(suffix=".pt")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            stage = cls.__new__(cls)
            stage.config, stage.taxonomy = cfg, taxonomy
            stage.class_ids = list(
                payload["extra"].get("class_ids", [c.id for c in taxonomy.group(cfg.group)])
            )
            stage.device, _ = resolve_device(device)
            try:
                stage.yolo = _build_yolo(tmp)
                stage.yolo.model.eval()  # a checkpoint saved mid-training keeps training mode
            except Exception as e:
                raise CheckpointError(
                    f"model file {path}: its Ultralytics weights do not load ({e}); retrain yolo_seg"
                ) from e
            stage._pt_bytes = data
        finally:
            Path(tmp).unlink(missing_ok=True)
        return stage


def _read_checkpoint(path: str | Path, taxonomy: Taxonomy) -> tuple[dict[str, Any], bytes]:
    """A yolo_seg file's payload and the Ultralytics ``.pt`` bytes it carries."""
    payload = load_checkpoint(path, stage=YoloSegStage.name, class_counts=taxonomy_counts(taxonomy))
    data = payload["state_dict"].get("ultralytics_pt")
    if not data:
        raise CheckpointError(f"model file {path} holds no Ultralytics weights; retrain yolo_seg")
    return payload, data


class _HeadTap:
    """Reads what Ultralytics' ``predict`` computes but does not return: the per-class scores
    of each kept detection (from the head's raw output at the indices NMS kept) and the
    per-object features (Ultralytics' own ``return_idxs``/``feats`` route).

    Independent sigmoid scores, one per class (YOLO's head is multi-label), not a softmax.
    """

    def __init__(self, predictor):
        self.raw = None
        self.idxs = None
        self.maps = None
        self.strides = None
        self.pred = predictor
        head = predictor.model.model.model[-1] if hasattr(predictor.model, "model") else None
        self.hook = None
        if head is not None:
            self.hook = head.register_forward_hook(self._on_head)
        self._orig = getattr(predictor, "get_obj_feats", None)
        if self._orig is not None:
            predictor.get_obj_feats = self._obj_feats

    def _on_head(self, module, inputs, output):
        self.pred._feats = self.maps = list(inputs[0])
        self.strides = getattr(module, "stride", None)
        out = output[0] if isinstance(output, (tuple, list)) else output
        self.raw = out[0] if isinstance(out, (tuple, list)) else out
        self.nc = getattr(module, "nc", None)

    def _obj_feats(self, feat_maps, idxs):
        self.idxs = idxs
        return self._orig(feat_maps, idxs)

    def class_scores(self, b: int) -> np.ndarray | None:
        try:
            idx = self.idxs[b]
            return self.raw[b, 4 : 4 + self.nc, idx].T.float().cpu().numpy()
        except Exception:  # a layout this Ultralytics version does not share: leave probs out
            return None

    def image_embedding(self, b: int, orig_shape: tuple[int, int]) -> np.ndarray | None:
        """``(sum of channels,)`` float32: each head input map averaged over the cells that
        hold image ``b`` (Ultralytics letterboxes: it scales the photo to fit and pads the
        rest evenly on both sides; the padding's share depends on the aspect ratio and on the
        batch, so it is left out), levels concatenated."""
        try:
            maps, strides = self.maps, [float(s) for s in self.strides]
        except Exception:  # no head input seen (or no strides): no image embedding
            return None
        # input size in pixels, from the finest map and its stride
        in_h, in_w = maps[0].shape[-2] * strides[0], maps[0].shape[-1] * strides[0]
        h0, w0 = orig_shape
        gain = min(in_h / h0, in_w / w0)
        pad_y, pad_x = (in_h - h0 * gain) / 2, (in_w - w0 * gain) / 2
        parts = []
        for f, s in zip(maps, strides, strict=True):
            r0 = min(int(pad_y // s), f.shape[-2] - 1)
            c0 = min(int(pad_x // s), f.shape[-1] - 1)
            r1 = max(r0 + 1, min(f.shape[-2], -int(-(in_h - pad_y) // s)))
            c1 = max(c0 + 1, min(f.shape[-1], -int(-(in_w - pad_x) // s)))
            parts.append(f[b, :, r0:r1, c0:c1].float().mean((1, 2)))
        import torch

        return torch.cat(parts).cpu().numpy().astype(np.float32)

    def remove(self) -> None:
        if self.hook is not None:
            self.hook.remove()
        self.pred._feats = None
        if self._orig is not None:
            self.pred.get_obj_feats = self._orig


def _as_split(rec, split: str):
    from dataclasses import replace

    return replace(rec, split=split, file_name="val_" + Path(rec.file_name).name)
