"""Hungarian matching of queries to ground-truth instances on mask and class costs."""

from __future__ import annotations

import numpy as np
import torch


def dice_cost(pred_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` logits, ``(M, P)`` targets in [0, 1] -> ``(N, M)`` 1 - dice."""
    p = pred_logits.sigmoid()
    num = 2 * p @ targets.T
    den = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


def bce_cost(pred_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` logits, ``(M, P)`` targets -> ``(N, M)`` mean pixel BCE."""
    pos = nn_bce(pred_logits, torch.ones_like(pred_logits))
    neg = nn_bce(pred_logits, torch.zeros_like(pred_logits))
    return (pos @ targets.T + neg @ (1 - targets).T) / pred_logits.shape[-1]


def nn_bce(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")


def linear_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment (scipy); rows = queries, columns = targets."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.int64), cols.astype(np.int64)


@torch.no_grad()
def match(
    mask_logits: torch.Tensor,
    class_prob: torch.Tensor,
    target_masks: torch.Tensor,
    w_dice: float = 5.0,
    w_bce: float = 5.0,
    w_cls: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Queries ``(N, h, w)`` logits; ``class_prob`` ``(N, M)`` = each query's probability of each
    target's class; targets ``(M, h, w)``. Cost = w_cls * (-p) + w_dice * dice + w_bce * bce."""
    if target_masks.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pl = mask_logits.flatten(1).float()
    tm = target_masks.flatten(1).float()
    cost = w_cls * -class_prob.float() + w_dice * dice_cost(pl, tm) + w_bce * bce_cost(pl, tm)
    return linear_assignment(cost.cpu().numpy())
