"""ALBERT's optional inference priors: the part prior on damage logits (eq. 20) and the
Gaussian sharpening of damage masks (eq. 14)."""

from __future__ import annotations

import math

import numpy as np
import torch


def part_prior_boost(
    zd: torch.Tensor, mprob: np.ndarray, pp: np.ndarray, alpha: float, tau: float
) -> torch.Tensor:
    """Eq. 20: z_d' = z_d + alpha * mean of the query's mask over the part region R_p, with R_p
    the most overlapped confident part mask of the same image. No-object logits stay."""
    parts = [j for j in range(len(pp)) if pp[j, :-1].max() > tau]
    if not parts:
        return zd
    regions = mprob[parts] > 0.5
    boost = np.zeros(len(mprob), dtype=np.float32)
    for i in range(len(mprob)):
        means = [mprob[i][r].mean() for r in regions if r.any()]
        boost[i] = max(means) if means else 0.0
    zd = zd.clone()
    zd[:, :-1] += alpha * torch.from_numpy(boost)[:, None]
    return zd


def gaussian_prior(m: np.ndarray, sigma_scale: float) -> np.ndarray:
    """Eq. 14: M * exp(-((i-i*)^2 + (j-j*)^2) / (2 sigma^2)) around the mask's weighted centre;
    sigma = sigma_scale * sqrt(area above 0.5), so it sharpens without erasing the instance."""
    area = float((m > 0.5).sum())
    if area == 0:
        return m
    yy, xx = np.mgrid[0 : m.shape[0], 0 : m.shape[1]]
    w = m / m.sum()
    cy, cx = float((yy * w).sum()), float((xx * w).sum())
    sigma = sigma_scale * math.sqrt(area)
    return m * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
