"""SAM back ends: segment-anything ViT-B/L/H from a checkpoint path, and MobileSAM
through Ultralytics from a local checkpoint. Neither ever downloads weights.

The image embedding is the expensive part (seconds on a CPU): it is cached in memory and
on disk as fp16, keyed by the image's sha256 and the model, so the first click on a photo
whose embedding was pre-computed costs only the prompt decoder. That decoder runs through
``sam_decode``: its image-only projections are kept per image and only the best mask is
upsampled, in the window where it can be positive. The result is ``SamPredictor``'s up to
float32 rounding (a pixel whose logit is within ~1e-6 of 0 may flip).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.config import env_name
from models.assist.base import Assistant, EmbeddingCache, image_sha256
from models.assist.sam_decode import DecoderState, supports_cached_decoder, upsample_window
from models.base import CheckpointError, resolve_device

SAM_TYPES = ("vit_b", "vit_l", "vit_h")


def _checkpoint_key(path: str | Path | None) -> str:
    if path is None:
        return "random"
    p = Path(path)
    st = p.stat()
    return f"{p.stem}-{st.st_size}"


_SAM_MODELS: dict[tuple[str, str | None, str], object] = {}


def _load_sam(model_type: str, checkpoint: str | None, device: str):
    """One SAM model per (type, file, device) per process: assistants (the API makes one per
    prepared image) share it, each with its own predictor state."""
    key = (model_type, checkpoint, device)
    if key not in _SAM_MODELS:
        from segment_anything import sam_model_registry

        try:
            sam = sam_model_registry[model_type](checkpoint=checkpoint)
        except Exception as e:  # a wrong/corrupt file surfaces as many torch error types
            raise CheckpointError(
                f"SAM checkpoint {checkpoint} could not be loaded as {model_type} ({type(e).__name__}: {e}); "
                f"check {env_name('sam_model_type')} matches the file"
            ) from e
        _SAM_MODELS[key] = sam.to(device).eval()
    return _SAM_MODELS[key]


class SamAssistant(Assistant):
    """segment-anything ``SamPredictor`` with a disk cache of embeddings.

    ``checkpoint=None`` builds randomly initialised weights (tests and timing only)."""

    def __init__(
        self,
        model_type: str = "vit_b",
        checkpoint: str | Path | None = None,
        cache_dir: str | Path | None = None,
        device: str = "auto",
        tolerance: float = 1.0,
        min_area: float = 16.0,
    ):
        super().__init__(tolerance, min_area)
        import torch
        from segment_anything import SamPredictor

        if model_type not in SAM_TYPES:
            raise ValueError(f"SAM model type {model_type!r} is not one of {', '.join(SAM_TYPES)}")
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise CheckpointError(
                f"SAM checkpoint {checkpoint} does not exist; download sam_{model_type} weights yourself and "
                f"set {env_name('sam_checkpoint')} to the file, or unset it to use a weight-free back end"
            )
        self.device, _ = resolve_device(device)
        sam = _load_sam(
            model_type, None if checkpoint is None else str(checkpoint), str(self.device)
        )
        self.predictor = SamPredictor(sam)
        self._torch = torch
        self.backend = f"sam_{model_type}" + ("" if checkpoint else "_random")
        self.cache = EmbeddingCache(cache_dir, f"{self.backend}-{_checkpoint_key(checkpoint)}")
        self.last_embedding_cached = False
        self._state: DecoderState | None = None

    def _prepare(self, image: np.ndarray) -> None:
        p = self.predictor
        key = image_sha256(image)
        cached = self.cache.get(key)
        p.reset_image()
        if cached is not None:
            input_image = p.transform.apply_image(image)
            p.original_size = image.shape[:2]
            p.input_size = tuple(input_image.shape[:2])
            p.features = self._torch.from_numpy(cached.astype(np.float32)).to(self.device)
            p.is_image_set = True
            self.last_embedding_cached = True
        else:
            with self._torch.inference_mode():
                p.set_image(image, image_format="RGB")
            self.cache.put(key, p.features.float().cpu().numpy())
            self.last_embedding_cached = False
        self._state = None
        if supports_cached_decoder(p.model):
            with self._torch.inference_mode():
                self._state = DecoderState(p.model, p.features, self._dense_pe())

    def _predict_mask(self, points, labels, box):
        """``SamPredictor.predict`` semantics (its best mask and score) for less: the decoder
        reuses the per-image :class:`DecoderState`, the best candidate is picked from the
        256x256 logits, and only the window where it can be positive is upsampled."""
        torch = self._torch
        p = self.predictor
        model = p.model
        with torch.inference_mode():
            pts = None
            if len(points):
                coords = p.transform.apply_coords(points.astype(np.float32), p.original_size)
                pts = (
                    torch.as_tensor(coords, dtype=torch.float, device=self.device)[None],
                    torch.as_tensor(labels, dtype=torch.int, device=self.device)[None],
                )
            boxes = None
            if box is not None:
                b = p.transform.apply_boxes(box.astype(np.float32), p.original_size)
                boxes = torch.as_tensor(b, dtype=torch.float, device=self.device)[None]
            sparse, dense = model.prompt_encoder(points=pts, boxes=boxes, masks=None)
            # several candidates for an ambiguous lone click; one is enough for a box
            multi = box is None and len(points) == 1
            if self._state is not None:
                low_res, iou = self._state.decode(sparse, multi)
            else:
                low_res, iou = model.mask_decoder(
                    image_embeddings=p.features,
                    image_pe=self._dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=multi,
                )
            best = int(iou[0].argmax())
            mask, offset = upsample_window(
                model, low_res[:, best : best + 1], p.input_size, p.original_size
            )
        if mask is None:
            return np.zeros((1, 1), dtype=bool), 0.0, (0, 0)
        crop, score, (x0, y0) = _crop_to_content(mask, float(iou[0, best]))
        return crop, score, (x0 + offset[0], y0 + offset[1])

    def _dense_pe(self):
        """The decoder's positional encoding of the 64x64 grid: a constant of the model,
        which ``SamPredictor`` recomputes on every call."""
        model = self.predictor.model
        pe = getattr(model, "_panelbeater_dense_pe", None)
        if pe is None:
            with self._torch.inference_mode():
                pe = model.prompt_encoder.get_dense_pe()
            model._panelbeater_dense_pe = pe
        return pe


class MobileSamAssistant(Assistant):
    """MobileSAM (or any Ultralytics SAM .pt) from a local checkpoint, through Ultralytics."""

    def __init__(
        self,
        checkpoint: str | Path,
        cache_dir: str | Path | None = None,
        device: str = "auto",
        tolerance: float = 1.0,
        min_area: float = 16.0,
    ):
        super().__init__(tolerance, min_area)
        import os

        import torch

        os.environ.setdefault("YOLO_OFFLINE", "1")
        if checkpoint is None or not Path(checkpoint).is_file():
            raise CheckpointError(
                f"MobileSAM checkpoint {checkpoint} does not exist; download mobile_sam.pt yourself and set "
                f"{env_name('mobile_sam_checkpoint')} to it, or use another assist back end"
            )
        from ultralytics.models.sam.predict import Predictor

        dev, _ = resolve_device(device)
        self._torch = torch
        self.predictor = Predictor(
            overrides={
                "task": "segment",
                "mode": "predict",
                "imgsz": 1024,
                "model": str(checkpoint),
                "save": False,
                "verbose": False,
                "device": str(dev),
            }
        )
        # Keep every candidate and pick the best, as the SAM back end does: Ultralytics drops
        # masks whose predicted IoU is under ``conf``, which would answer an awkward box with
        # nothing (its config check refuses a negative value, hence set after construction).
        self.predictor.args.conf = float("-inf")
        try:
            self.predictor.setup_model(verbose=False)
        except Exception as e:  # a wrong/corrupt file surfaces as many error types
            raise CheckpointError(
                f"MobileSAM checkpoint {checkpoint} could not be loaded ({type(e).__name__}: {e}); "
                f"point {env_name('mobile_sam_checkpoint')} at a mobile_sam.pt file"
            ) from e
        self.backend = "mobile_sam"
        self.cache = EmbeddingCache(cache_dir, f"mobile_sam-{_checkpoint_key(checkpoint)}")
        self.last_embedding_cached = False

    def _prepare(self, image: np.ndarray) -> None:
        p = self.predictor
        key = image_sha256(image)
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        cached = self.cache.get(key)
        if p.model is None:
            p.setup_model()
        # setup_source also records the original image size the prompts are scaled from
        p.setup_source(bgr)
        if cached is not None:
            p.features = self._torch.from_numpy(cached.astype(np.float32)).to(p.device)
            self.last_embedding_cached = True
            return
        p.set_image(bgr)
        if isinstance(p.features, self._torch.Tensor):
            self.cache.put(key, p.features.float().cpu().numpy())
        self.last_embedding_cached = False

    def _predict_mask(self, points, labels, box):
        kw = {}
        if box is not None:
            kw["bboxes"] = [box.tolist()]
        if len(points):
            kw["points"] = [points.tolist()]
            kw["labels"] = [labels.tolist()]
        results = self.predictor(source=None, **kw)
        if not results or results[0].masks is None or len(results[0].masks.data) == 0:
            return np.zeros((1, 1), dtype=bool), 0.0, (0, 0)
        masks = results[0].masks.data.cpu().numpy().astype(bool)
        conf = (
            results[0].boxes.conf.cpu().numpy()
            if results[0].boxes is not None
            else np.ones(len(masks))
        )
        best = int(np.argmax(conf))
        return _crop_to_content(masks[best], float(conf[best]))


def _crop_to_content(mask: np.ndarray, score: float) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Trace only the mask's bounding window: latency stays independent of photo size."""
    # any() per axis: a few times cheaper than nonzero() on a speckled 1024-px mask
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(ys) == 0:
        return np.zeros((1, 1), dtype=bool), 0.0, (0, 0)
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    return mask[y0:y1, x0:x1], score, (int(x0), int(y0))
