"""ALBERT's loss (eq. 5, 7, 8): lambda1 dice + lambda2 BCE on matched masks, CE on the
damage and part heads (unmatched queries -> no-object), focal loss on the fake sigmoids,
and lambda_IoU soft-IoU. Each term is a plain function so it can be checked by hand."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from core.taxonomy import GROUPS
from models.albert.matching import match


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean over instances of 1 - (2 sum(p t) + s) / (sum p + sum t + s); inputs ``(M, P)``."""
    p = logits.sigmoid()
    num = 2 * (p * targets).sum(-1) + smooth
    den = p.sum(-1) + targets.sum(-1) + smooth
    return (1 - num / den).mean()


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean pixel binary cross-entropy."""
    return F.binary_cross_entropy_with_logits(logits, targets)


def soft_iou_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean of 1 - (sum(p t) + s) / (sum p + sum t - sum(p t) + s)."""
    p = logits.sigmoid()
    inter = (p * targets).sum(-1)
    union = p.sum(-1) + targets.sum(-1) - inter
    return (1 - (inter + smooth) / (union + smooth)).mean()


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    normalizer: float = 1.0,
) -> torch.Tensor:
    """Sigmoid focal loss summed over all entries, divided by ``normalizer`` (the number of targets)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (a_t * (1 - p_t) ** gamma * ce).sum() / max(normalizer, 1.0)


def weighted_ce(
    logits: torch.Tensor, target: torch.Tensor, no_object_weight: float
) -> torch.Tensor:
    """Cross-entropy where the last class (no-object) weighs ``no_object_weight``."""
    w = torch.ones(logits.shape[-1], device=logits.device, dtype=logits.dtype)
    w[-1] = no_object_weight
    return F.cross_entropy(logits, target, weight=w)


@dataclass
class Target:
    """One image's ground truth at mask-feature resolution.

    masks ``(M, h, w)`` float in [0, 1]; damage ``(M,)`` head index or n_damage (no-object);
    part ``(M,)`` head index or n_part; fake ``(M, n_fake)`` 0/1; head ``(M,)`` 0 damage,
    1 fake, 2 part (the instance's own group); index ``(M,)`` its column in that head.
    """

    masks: torch.Tensor
    damage: torch.Tensor
    part: torch.Tensor
    fake: torch.Tensor
    head: torch.Tensor
    index: torch.Tensor

    def mirrored(self, mirrors: dict[str, torch.Tensor]) -> Target:
        """The ground truth of the horizontally flipped photo: masks flipped, and each sided
        class swapped for its other side (``mirrors[head]``: head index -> mirrored head index,
        from :meth:`core.taxonomy.Taxonomy.mirror_index`). No-object labels stay as they are."""
        heads = GROUPS  # head codes 0/1/2 in this order

        def swap(labels: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
            real = labels < len(table)  # the no-object index is len(table)
            out = labels.clone()
            out[real] = table[labels[real]]
            return out

        index = self.index.clone()
        for h, name in enumerate(heads):
            mine = self.head == h
            index[mine] = mirrors[name][self.index[mine]]
        return Target(
            masks=self.masks.flip(-1),
            damage=swap(self.damage, mirrors["damage"]),
            part=swap(self.part, mirrors["part"]),
            # a mirror map is its own inverse, so gathering the columns with it swaps them
            fake=self.fake[:, mirrors["fake"]],
            head=self.head.clone(),
            index=index,
        )


def class_prob_for_targets(
    out_d: torch.Tensor, out_f: torch.Tensor, out_p: torch.Tensor, t: Target
) -> torch.Tensor:
    """``(N, M)``: each query's probability of each target's own class, in the target's head."""
    pd, pf, pp = out_d.softmax(-1), out_f.sigmoid(), out_p.softmax(-1)
    cols = []
    for h, i in zip(t.head.tolist(), t.index.tolist(), strict=True):
        cols.append((pd, pf, pp)[h][:, i])
    return torch.stack(cols, 1) if cols else out_d.new_zeros((out_d.shape[0], 0))


def albert_loss(
    out: dict[str, torch.Tensor], targets: list[Target], cfg
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of a batch (eq. 8) and its terms; ``out`` as AlbertModel returns it."""
    n_damage = out["damage"].shape[-1] - 1
    n_part = out["part"].shape[-1] - 1
    b, n = out["damage"].shape[:2]
    dmg_t = torch.full((b, n), n_damage, dtype=torch.long, device=out["damage"].device)
    part_t = torch.full((b, n), n_part, dtype=torch.long, device=out["damage"].device)
    fake_t = torch.zeros_like(out["fake"])
    pm, tm = [], []
    for k, t in enumerate(targets):
        cp = class_prob_for_targets(out["damage"][k], out["fake"][k], out["part"][k], t)
        rows, cols = match(out["masks"][k], cp, t.masks, cfg.w_dice, cfg.w_bce, cfg.w_cls)
        if len(rows) == 0:
            continue
        r, c = (
            torch.as_tensor(rows, device=dmg_t.device),
            torch.as_tensor(cols, device=dmg_t.device),
        )
        dmg_t[k, r] = t.damage[c]
        part_t[k, r] = t.part[c]
        fake_t[k, r] = t.fake[c].to(fake_t.dtype)
        pm.append(out["masks"][k][r].flatten(1))
        tm.append(t.masks[c].flatten(1))
    num = float(sum(len(t.masks) for t in targets))
    terms: dict[str, torch.Tensor] = {}
    if pm:
        p, tt = torch.cat(pm).float(), torch.cat(tm).float()
        terms["dice"] = cfg.w_dice * dice_loss(p, tt)
        terms["bce"] = cfg.w_bce * bce_loss(p, tt)
        terms["iou"] = cfg.w_iou * soft_iou_loss(p, tt)
    terms["ce_damage"] = weighted_ce(
        out["damage"].flatten(0, 1).float(), dmg_t.flatten(), cfg.no_object_weight
    )
    terms["ce_part"] = weighted_ce(
        out["part"].flatten(0, 1).float(), part_t.flatten(), cfg.no_object_weight
    )
    terms["focal_fake"] = focal_loss(
        out["fake"].float(), fake_t, cfg.focal_alpha, cfg.focal_gamma, num
    )
    total = sum(terms.values())
    return total, {k: float(v.detach()) for k, v in terms.items()}
