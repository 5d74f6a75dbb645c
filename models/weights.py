"""What kind of weights a file a user brings holds, read without running code it carries.

Kinds (:data:`KINDS`): segment-anything ViT-B/L/H, MobileSAM (the TinyViT state dict that
Ultralytics' ``build_mobile_sam`` loads), an Ultralytics YOLO segmentation ``.pt``, a
torchvision ResNet34 or Mask R-CNN state dict, and a timm or torchvision ViT.

How a file is read (:func:`load_weights_file`):

- State dicts are read with ``torch.load(weights_only=True)``: torch's restricted unpickler,
  which builds only tensors and plain containers, so a file cannot run code on load.
- An Ultralytics ``.pt`` is a full pickle of the model *objects* (``SegmentationModel``,
  ``Conv``, ...), which that unpickler refuses by default. Its pickle is listed first, without
  running it (``torch.serialization.get_unsafe_globals_in_checkpoint``); when every global it
  names is an ``nn.Module`` class of torch, torchvision, timm or Ultralytics (or one of a few
  plain data classes), it is read with the same restricted unpickler, allowing those classes
  only. A file naming anything else (``os.system``, ``builtins.eval``, a class of another
  package) is refused unless the caller passes ``trust=True``, which reads it as a full pickle.
- A file that is not a complete PyTorch archive (truncated download) is reported as such.

Every error is a :class:`~models.base.CheckpointError` whose sentence names the file and
what to do. torch is imported lazily.
"""

from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.base import CheckpointError

#: kind -> what it is, in words
KINDS: dict[str, str] = {
    "sam": "segment-anything SAM ViT-B/L/H state dict",
    "mobile_sam": "MobileSAM (TinyViT SAM) state dict",
    "yolo_seg": "Ultralytics YOLO segmentation .pt",
    "resnet34": "torchvision ResNet34 state dict",
    "mask_rcnn": "torchvision Mask R-CNN (ResNet-50 FPN) state dict",
    "vit": "timm or torchvision ViT state dict",
    "mobilenet_v3_large": "torchvision MobileNetV3-Large state dict",
}

SAM_SIZES = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
VIT_SIZES = {192: "tiny", 384: "small", 768: "base", 1024: "large", 1280: "huge"}
#: (blocks per stage, bottleneck) -> ResNet depth
RESNET_DEPTHS = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}

#: Packages whose ``nn.Module`` classes a full-model pickle may name and still be read with
#: torch's restricted unpickler (constructed empty, then given their pickled attributes).
_MODULE_PACKAGES = ("ultralytics.", "torch.nn.", "torchvision.", "timm.")
#: Plain data classes full checkpoints carry beside the model (training args, numbers).
_DATA_GLOBALS = {
    "ultralytics.utils.IterableSimpleNamespace",
    "types.SimpleNamespace",
    "argparse.Namespace",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
}


@dataclass
class WeightsInfo:
    """What :func:`inspect_weights` found: the kind, facts about it, how it was read."""

    kind: str
    details: dict[str, Any] = field(default_factory=dict)
    #: how the file was read, when not a plain ``weights_only`` state dict
    note: str = ""


def _fail(path: Path, message: str) -> CheckpointError:
    return CheckpointError(f"weights file {path}: {message}")


def _is_zip_start(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _resolve_global(name: str) -> object | None:
    """The class ``name`` ("pkg.module.Class") if it may be allowed, else None. Only modules
    of installed packages are imported; nothing from the file runs."""
    import torch

    if name in _DATA_GLOBALS or name.startswith("numpy.dtypes."):
        module, _, attr = name.rpartition(".")
    elif name.startswith(_MODULE_PACKAGES):
        module, _, attr = name.rpartition(".")
    else:
        return None
    if name.startswith("ultralytics."):
        from models.yolo_seg import offline_ultralytics

        offline_ultralytics()
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    if name in _DATA_GLOBALS or name.startswith("numpy.dtypes."):
        return obj
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
        return obj
    return None


def _legacy_pickle_globals(path: Path, max_pickles: int = 4) -> list[str]:
    """The globals the first pickles of a non-archive file name, read without running them
    (``pickletools`` only parses opcodes); a damaged stream ends the scan."""
    import pickletools

    names: list[str] = []
    with open(path, "rb") as f:
        for _ in range(max_pickles):
            strings: list[str] = []
            try:
                for op, arg, _pos in pickletools.genops(f):
                    if op.name in ("GLOBAL", "INST"):
                        names.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        names.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str):
                        strings.append(arg)
            except Exception:
                break
    return [
        n
        for n in dict.fromkeys(names)
        if not n.startswith(("torch.", "collections.")) and _resolve_global(n) is None
    ]


def load_weights_file(path: str | Path, *, trust: bool = False) -> tuple[object, str]:
    """The object a checkpoint file holds, and a note on how it was read ("" for a plain
    ``weights_only`` load). Raises CheckpointError naming the file and what to do."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "does not exist; give the path of a downloaded checkpoint")
    if path.stat().st_size == 0:
        raise _fail(path, "is empty; download it again")
    zip_start = _is_zip_start(path)
    if zip_start:
        import zipfile

        if not zipfile.is_zipfile(path):
            raise _fail(
                path,
                "is truncated or damaged (a PyTorch archive without its end); "
                "download it again and check its size or sha256 against the source",
            )

    def _load(**kw: Any) -> object:
        try:
            with warnings.catch_warnings():
                # an old-format pickle: torch warns before refusing or reading it
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                return torch.load(path, map_location="cpu", mmap=zip_start, **kw)
        except pickle.UnpicklingError:
            raise
        except Exception as e:  # torch reports damage as RuntimeError, EOFError, ...
            raise _fail(
                path,
                f"could not be read as a PyTorch checkpoint ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200]}); it may be truncated or not a checkpoint: "
                f"download it again",
            ) from e

    try:
        return _load(weights_only=True), ""
    except pickle.UnpicklingError as e:
        reason = re.search(r"(Unsupported [^\n]*|GLOBAL [\w.]+[^\n]*)", str(e))
        refusal_reason = reason.group(1).strip() if reason else "not plain tensors"
    if not zip_start:
        if trust:
            return _load(weights_only=False), "read as a full pickle because trust was given"
        named = _legacy_pickle_globals(path)
        raise _fail(
            path,
            f"is an old-format pickle that torch's weights-only loader refuses ({refusal_reason})"
            + (f"; it names {', '.join(named[:5])}" if named else "")
            + "; loading it would run code the file chooses. It was not loaded. Re-save it as "
            "a state dict, or add it with --trust if you trust where it came from",
        )
    unsafe = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    allowed = {name: _resolve_global(name) for name in unsafe}
    refused = sorted(n for n, obj in allowed.items() if obj is None)
    if refused:
        if trust:
            note = (
                f"read as a full pickle because trust was given (it names {', '.join(refused)}, "
                f"which the safe loader refuses)"
            )
            return _load(weights_only=False), note
        raise _fail(
            path,
            f"its pickle names {', '.join(refused[:5])}"
            + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
            + ", which torch's weights-only loader refuses and which are not model classes "
            "Panelbeater knows; loading it would run code the file chooses. It was not loaded. "
            "Use a checkpoint from the model's publisher, or add it with --trust if you trust "
            "where it came from",
        )
    with torch.serialization.safe_globals(list(allowed.values())):
        obj = _load(weights_only=True)
    note = ""
    if unsafe:
        note = (
            "a full-model pickle (as Ultralytics saves): read with torch's weights-only loader, "
            "allowing only the nn.Module classes it names"
        )
    return obj, note


# -- kind detection ----------------------------------------------------------------------


def _is_tensor_dict(obj: object) -> bool:
    import torch

    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _state_dict(obj: object) -> dict[str, Any] | None:
    """The state dict inside ``obj``: itself, a module's, or under a usual wrapper key."""
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and not _is_tensor_dict(obj):
        for key in ("state_dict", "model", "model_state_dict", "module"):
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module):
                inner = inner.state_dict()
            if _is_tensor_dict(inner):
                obj = inner
                break
    if not _is_tensor_dict(obj):
        return None
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def _n_params(sd: dict[str, Any]) -> int:
    return int(sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")))


def _count(sd: dict[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def _vit_info(
    sd: dict[str, Any], layout: str, embed_key: str, head_key: str, layer_pattern: str, params: int
) -> dict[str, Any]:
    """What a ViT state dict holds: its layout, width (``embed_key``'s rows), patch side,
    depth (the distinct ``layer_pattern`` indices) and the class count of ``head_key``."""
    dim, patch = int(sd[embed_key].shape[0]), int(sd[embed_key].shape[-1])
    head = sd.get(head_key)
    return {
        "layout": layout,
        "size": VIT_SIZES.get(dim, str(dim)),
        "embed_dim": dim,
        "patch": patch,
        "depth": _count(sd, layer_pattern),
        "class_count": int(head.shape[0]) if head is not None else None,
        "params": params,
    }


def _ultralytics_model(obj: object) -> object | None:
    """The YOLO model inside an Ultralytics checkpoint (a dict with ``model``/``ema``)."""
    if isinstance(obj, dict):
        for key in ("model", "ema"):
            m = obj.get(key)
            if type(m).__module__.startswith("ultralytics."):
                return m
    if type(obj).__module__.startswith("ultralytics."):
        return obj
    return None


def _yolo_details(path: Path, model: object) -> tuple[str, dict[str, Any]]:
    yaml = getattr(model, "yaml", None) or {}
    task = getattr(model, "task", None) or type(model).__name__.removesuffix("Model").lower()
    names = getattr(model, "names", None)
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    nc = yaml.get("nc") or getattr(model, "nc", None) or (len(names) if names else None)
    details: dict[str, Any] = {
        "task": task,
        "class_count": int(nc) if nc is not None else None,
        "architecture": Path(str(yaml.get("yaml_file", ""))).name or type(model).__name__,
        "params": int(sum(p.numel() for p in model.parameters())),
    }
    if names:
        details["class_names"] = [str(n) for n in names]
    if task != "segment":
        raise _fail(
            path,
            f"is an Ultralytics YOLO {task} model ({type(model).__name__}), not a segmentation "
            f"one; Panelbeater fine-tunes YOLO segmentation weights (files such as yolo11m-seg.pt)",
        )
    return "yolo_seg", details


def _classify_state_dict(path: Path, sd: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    params = _n_params(sd)
    if "image_encoder.patch_embed.proj.weight" in sd and any(
        k.startswith("mask_decoder.") for k in sd
    ):
        dim = int(sd["image_encoder.patch_embed.proj.weight"].shape[0])
        depth = _count(sd, r"image_encoder\.blocks\.(\d+)\.")
        size = SAM_SIZES.get(dim)
        if size is None:
            raise _fail(
                path,
                f"looks like a SAM checkpoint but its image encoder is {dim} wide; "
                f"segment-anything has ViT-B (768), ViT-L (1024) and ViT-H (1280)",
            )
        return "sam", {"model_type": size, "embed_dim": dim, "depth": depth, "params": params}
    if "image_encoder.patch_embed.seq.0.c.weight" in sd and any(
        k.startswith("mask_decoder.") for k in sd
    ):
        return "mobile_sam", {"encoder": "TinyViT", "params": params}
    if "backbone.body.conv1.weight" in sd and any(k.startswith("roi_heads.") for k in sd):
        cls = sd.get("roi_heads.box_predictor.cls_score.weight")
        mask = sd.get("roi_heads.mask_predictor.mask_fcn_logits.weight")
        if mask is None:
            raise _fail(
                path,
                "is a torchvision Faster R-CNN (no mask head), not a Mask R-CNN; use "
                "maskrcnn_resnet50_fpn weights",
            )
        return "mask_rcnn", {
            "class_count": int((cls if cls is not None else mask).shape[0]),
            "backbone": "resnet50_fpn",
            "params": params,
        }
    if "conv1.weight" in sd and "layer4.0.conv1.weight" in sd:
        blocks = tuple(_count(sd, rf"layer{i}\.(\d+)\.") for i in range(1, 5))
        bottleneck = "layer1.0.conv3.weight" in sd
        depth = RESNET_DEPTHS.get((blocks, bottleneck))
        if depth != 34:
            what = f"ResNet-{depth}" if depth else f"ResNet with blocks {blocks}"
            raise _fail(
                path,
                f"is a {what} state dict; Panelbeater's part classifier starts from a "
                f"torchvision ResNet34 (resnet34 weights)",
            )
        fc = sd.get("fc.weight")
        return "resnet34", {
            "class_count": int(fc.shape[0]) if fc is not None else None,
            "params": params,
        }
    if "features.16.0.weight" in sd and "features.1.block.0.0.weight" in sd:
        # MobileNetV3-Large: 17 feature blocks (0..16); the small one stops at 12
        cls = sd.get("classifier.3.weight")
        return "mobilenet_v3_large", {
            "class_count": int(cls.shape[0]) if cls is not None else None,
            "params": params,
        }
    if "conv_proj.weight" in sd and "class_token" in sd:
        return "vit", _vit_info(
            sd,
            "torchvision",
            "conv_proj.weight",
            "heads.head.weight",
            r"encoder\.layers\.encoder_layer_(\d+)\.",
            params,
        )
    if "patch_embed.proj.weight" in sd and any(k.startswith("blocks.") for k in sd):
        return "vit", _vit_info(
            sd, "timm", "patch_embed.proj.weight", "head.weight", r"blocks\.(\d+)\.", params
        )
    sample = ", ".join(list(sd)[:4])
    raise _fail(
        path,
        f"holds a state dict Panelbeater does not recognise (first keys: {sample}); "
        f"it takes {'; '.join(KINDS.values())}",
    )


def classify(path: str | Path, obj: object) -> tuple[str, dict[str, Any]]:
    """``(kind, details)`` of a loaded checkpoint object. Raises CheckpointError."""
    path = Path(path)
    model = _ultralytics_model(obj)
    if model is not None:
        return _yolo_details(path, model)
    sd = _state_dict(obj)
    if sd is None:
        raise _fail(
            path,
            f"holds a {type(obj).__name__}, not a model state dict or an Ultralytics "
            f"checkpoint; it takes {'; '.join(KINDS.values())}",
        )
    return _classify_state_dict(path, sd)


def inspect_weights(
    path: str | Path, *, expected_kind: str | None = None, trust: bool = False
) -> WeightsInfo:
    """Read ``path`` safely (:func:`load_weights_file`) and tell its kind and details
    (``model_type`` of a SAM, ``task``/``class_count`` of a YOLO, ``size`` of a ViT, ...).

    ``expected_kind``: refuse a file of another kind, saying which kind it holds.
    Raises CheckpointError with a sentence naming the file and what to do."""
    path = Path(path)
    if expected_kind is not None and expected_kind not in KINDS:
        raise CheckpointError(
            f"unknown weights kind {expected_kind!r}; choose one of {', '.join(KINDS)}"
        )
    obj, note = load_weights_file(path, trust=trust)
    try:
        kind, details = classify(path, obj)
    except CheckpointError as e:
        if expected_kind is None:
            raise
        raise CheckpointError(
            f"{e}. It is not a {expected_kind} checkpoint ({KINDS[expected_kind]})"
        ) from e
    if expected_kind is not None and kind != expected_kind:
        raise _fail(
            path,
            f"holds a {KINDS[kind]} (kind {kind}), not {expected_kind} ({KINDS[expected_kind]}); "
            f"add it with --kind {kind}, or pick the {expected_kind} file",
        )
    return WeightsInfo(kind=kind, details=details, note=note)


def load_state_dict(path: str | Path, kind: str, *, purpose: str = "") -> dict[str, Any]:
    """The state dict of a ``kind`` checkpoint (``"mask_rcnn"``, ``"resnet34"``, ...), read
    safely (:func:`load_weights_file`). ``purpose`` ("Mask R-CNN starts from it") ends the
    sentence of a wrong-kind error. Raises CheckpointError naming the file."""
    path = Path(path)
    obj, _ = load_weights_file(path)
    want = f"a {KINDS[kind]}" + (f" ({purpose})" if purpose else "")
    try:
        found, _ = classify(path, obj)
    except CheckpointError as e:
        raise CheckpointError(f"{e}. It needs {want}") from e
    if found != kind:
        raise _fail(path, f"holds a {KINDS[found]} (kind {found}); it needs {want}")
    sd = _state_dict(obj)
    if sd is None:  # an Ultralytics checkpoint has a model, not a state dict
        raise _fail(path, f"holds no state dict; it needs {want}")
    return sd
