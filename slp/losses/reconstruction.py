"""Masked pose reconstruction loss L_PR (paper eq. 2), confidence-weighted, masked joints only."""

from __future__ import annotations

import torch

from slp.distributed import all_reduce, rank_and_world


def masked_reconstruction_loss(pred_xy: torch.Tensor, target: torch.Tensor,
                               joint_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ M·C·‖pred − xy‖² / Σ M·C over the global batch's ``(B, T, 79)``, as ``(loss, value)``.

    ``target`` is the unmasked normalised pose ``(B, T, 79, 3)`` (x, y, confidence). Normalising by the weight
    sum (a SPEC decision) keeps the value independent of batch size and sequence length. The sums run over every
    rank's batch (one all-reduce of two numbers): ``value`` is the global loss, detached, the same on every rank;
    ``loss`` is this rank's share, scaled so that the data-parallel average of the ranks' gradients is the
    gradient of the global loss. (Normalising by each rank's own weight sum would weigh a masked joint by how
    many others its rank happened to mask.) Both are 0 when nothing masked carries confidence.
    """
    weight = joint_mask.float() * target[..., 2].float()
    error = ((pred_xy.float() - target[..., :2].float()) ** 2).sum(dim=-1)
    local = (weight * error).sum()
    totals = all_reduce(torch.stack([local.detach(), weight.sum()]), op="sum")
    denominator = totals[1].clamp(min=1e-6)
    return local * rank_and_world()[1] / denominator, totals[0] / denominator
