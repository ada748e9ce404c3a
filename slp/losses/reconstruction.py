"""Masked pose reconstruction loss L_PR (paper eq. 2), confidence-weighted, masked joints only."""

from __future__ import annotations

import torch


def masked_reconstruction_loss(pred_xy: torch.Tensor, target: torch.Tensor, joint_mask: torch.Tensor) -> torch.Tensor:
    """Σ M·C·‖pred − xy‖² / Σ M·C over ``(B, T, 79)``; 0 when nothing masked carries confidence.

    ``target`` is the unmasked normalised pose ``(B, T, 79, 3)`` (x, y, confidence). Normalising by the weight
    sum (a SPEC decision) keeps the value independent of batch size and sequence length.
    """
    weight = joint_mask.float() * target[..., 2]
    error = ((pred_xy - target[..., :2]) ** 2).sum(dim=-1)
    return (weight * error).sum() / weight.sum().clamp(min=1e-6)
