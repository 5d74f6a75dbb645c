"""The network every semantic segmenter shares: torchvision's LRASPP-MobileNetV3-Large, its
input normalisation and its loss.

From scratch by default; a torchvision MobileNetV3-Large state dict from the weights folder
starts the backbone when ``backbone_weights`` names one. Classes: background + the classes of
the taxonomy groups a stage predicts (:class:`models.semseg.labels.SemanticClasses`). torch and
torchvision are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.base import CheckpointError
from models.semseg.config import SemSegConfig

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255
#: width of MobileNetV3-Large's last feature map: the size of an embedding
EMBED_DIM = 960


def dice_loss(logits: Any, target: Any) -> Any:
    """1 - mean soft Dice over the classes present in the batch's targets."""
    import torch

    p = logits.float().softmax(1)
    present = torch.unique(target)
    onehot = (target.unsqueeze(1) == present.view(1, -1, 1, 1)).float()
    p = p[:, present]
    inter = (p * onehot).sum((0, 2, 3))
    denom = p.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1 - ((2 * inter + 1) / (denom + 1)).mean()


def build_net(cfg: SemSegConfig, n_classes: int, purpose: str = "the segmenter's backbone") -> Any:
    """LRASPP-MobileNetV3-Large with ``n_classes`` outputs; the backbone from
    ``cfg.backbone_weights`` when set; ``purpose`` names the stage in a file's errors."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=n_classes)
    if cfg.backbone_weights:
        p = Path(cfg.backbone_weights)
        if not p.is_file():
            raise CheckpointError(
                f"MobileNetV3 weights {p} do not exist; put them in the weights folder or leave "
                f"backbone_weights unset to train from scratch"
            )
        from models.weights import load_state_dict

        sd = load_state_dict(p, "mobilenet_v3_large", purpose=f"{purpose} starts from it")
        # LRASPP's backbone is MobileNetV3's ``features``, its layers renumbered from 0
        own = net.backbone.state_dict()
        take = {k[len("features.") :]: v for k, v in sd.items() if k.startswith("features.")}
        take = {k: v for k, v in take.items() if k in own and own[k].shape == v.shape}
        if len(take) < len(own) // 2:
            raise CheckpointError(
                f"MobileNetV3 weights {p} fit only {len(take)} of the backbone's {len(own)} "
                "tensors; use a torchvision mobilenet_v3_large state dict"
            )
        net.backbone.load_state_dict(take, strict=False)
    return net
