"""ALBERT's inputs: photos as normalised tensors and labelled images as training targets."""

from __future__ import annotations

import numpy as np
import torch

from core.records import ImageRecord
from core.taxonomy import GROUPS, Taxonomy
from models.albert.losses import Target
from models.base import taxonomy_counts

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) * 255


def to_input(image: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, S, S)`` float, ImageNet-normalised (aspect not kept)."""
    import cv2

    im = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return (torch.from_numpy(im).permute(2, 0, 1).float() - MEAN) / STD


def record_target(rec: ImageRecord, taxonomy: Taxonomy, mask_size: int) -> Target:
    """Ground truth of one image at mask-feature resolution; a damage or fake instance's part
    is its ``part_id`` attribute, else the labelled part it overlaps most."""
    import cv2

    counts = taxonomy_counts(taxonomy)
    inst = rec.instances
    h, w = rec.height, rec.width
    full = inst.masks(h, w)
    groups = [taxonomy.by_id(int(c)).group for c in inst.class_ids]
    part_ids = [i for i, g in enumerate(groups) if g == "part"]
    m = len(inst)
    damage = torch.full((m,), counts["damage"], dtype=torch.long)
    part = torch.full((m,), counts["part"], dtype=torch.long)
    fake = torch.zeros((m, counts["fake"]))
    head = torch.zeros(m, dtype=torch.long)
    index = torch.zeros(m, dtype=torch.long)
    for i, (c, g) in enumerate(zip(inst.class_ids, groups, strict=True)):
        idx = taxonomy.head_index(int(c))
        head[i], index[i] = GROUPS.index(g), idx
        if g == "part":
            part[i] = idx
            continue
        if g == "damage":
            damage[i] = idx
        else:
            fake[i, idx] = 1.0
        pid = inst.attributes[i].get("part_id") if inst.attributes else None
        if pid is not None and int(pid) in taxonomy and taxonomy.by_id(int(pid)).group == "part":
            part[i] = taxonomy.head_index(int(pid))
        elif part_ids:
            overlap = [(full[i] & full[j]).sum() for j in part_ids]
            if max(overlap) > 0:
                part[i] = taxonomy.head_index(
                    int(inst.class_ids[part_ids[int(np.argmax(overlap))]])
                )
    small = (
        np.stack(
            [
                cv2.resize(
                    f.astype(np.float32), (mask_size, mask_size), interpolation=cv2.INTER_AREA
                )
                for f in full
            ]
        )
        if m
        else np.zeros((0, mask_size, mask_size), np.float32)
    )
    return Target(torch.from_numpy(small), damage, part, fake, head, index)


def target_to(t: Target, device: torch.device) -> Target:
    return Target(
        *(getattr(t, f).to(device) for f in ("masks", "damage", "part", "fake", "head", "index"))
    )
