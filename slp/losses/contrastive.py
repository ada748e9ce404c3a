"""Fine-grained sign-text contrastive loss L_STC (paper eq. 3-5, SPEC §4).

For sign clips F_sign,i (n × d) and text tokens F_text,j (m × d), both L2-normalised:
Z = F_sign,i F_text,jᵀ (n × m); Ẑ = softmax over each row of Z (valid tokens only) ⊙ Z; m_ij = mean over the
valid rows of the row sums of Ẑ. The B × C matrix of m_ij is computed in chunks of sign samples, each chunk
given an analytic backward that recomputes it, so peak memory is O(chunk · C · n · m) instead of
O(B · C · n · m) with the same values. Negatives come from the global batch: features are gathered from every
rank (:func:`global_infonce`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from slp.distributed import all_gather, all_gather_with_grad, max_sizes, pad_to, rank_and_world


def _fine_grained_block(
    sign: torch.Tensor, sign_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
) -> torch.Tensor:
    """m_ij for normalised ``sign (b, n, d)`` against normalised ``text (C, m, d)`` → ``(b, C)``."""
    z = torch.einsum("bnd,cmd->bcnm", sign, text)
    weights = torch.softmax(z.masked_fill(~text_mask[None, :, None, :], float("-inf")), dim=-1)
    rows = (weights * z).sum(dim=-1) * sign_mask[:, None, :]
    return rows.sum(dim=-1) / sign_mask.sum(dim=-1, keepdim=True).clamp(min=1)


class _ChunkSimilarity(torch.autograd.Function):
    """One chunk of m_ij with an analytic backward that keeps no ``(b, C, n, m)`` tensor between passes.

    With r = Σ_k p_k z_k and p = softmax(z) over tokens, ∂r/∂z_j = p_j (1 + z_j − r); the backward recomputes z
    and p only, which is cheaper than re-running the forward graph under activation checkpointing.
    """

    @staticmethod
    def forward(ctx, sign, sign_mask, text, text_mask):
        ctx.save_for_backward(sign, sign_mask, text, text_mask)
        return _fine_grained_block(sign, sign_mask, text, text_mask)

    @staticmethod
    def backward(ctx, grad):
        sign, sign_mask, text, text_mask = ctx.saved_tensors
        z = torch.einsum("bnd,cmd->bcnm", sign, text)
        p = torch.softmax(z.masked_fill(~text_mask[None, :, None, :], float("-inf")), dim=-1)
        r = (p * z).sum(dim=-1, keepdim=True)
        row_grad = grad[:, :, None] * (sign_mask / sign_mask.sum(dim=-1, keepdim=True).clamp(min=1))[:, None, :]
        grad_z = p.mul_(z.sub_(r).add_(1.0)).mul_(row_grad[..., None])
        return (torch.einsum("bcnm,cmd->bnd", grad_z, text), None,
                torch.einsum("bcnm,bnd->cmd", grad_z, sign), None)


def fine_grained_similarity(
    sign: torch.Tensor,
    sign_mask: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``sign (B, n, d)``, ``sign_mask (B, n)``, ``text (C, m, d)``, ``text_mask (C, m)`` → ``(B, C)``.

    Padding clips (``sign_mask`` False) and tokens (``text_mask`` False) do not count. ``chunk_size`` bounds
    the number of sign samples whose ``C × n × m`` block exists at once.
    """
    sign = F.normalize(sign, dim=-1)
    text = F.normalize(text, dim=-1)
    if chunk_size is None or chunk_size >= sign.shape[0]:
        return _fine_grained_block(sign, sign_mask, text, text_mask)
    sign_mask, text_mask = sign_mask.to(sign.dtype), text_mask.bool()
    return torch.cat([
        _ChunkSimilarity.apply(sign[start : start + chunk_size], sign_mask[start : start + chunk_size], text,
                               text_mask)
        for start in range(0, sign.shape[0], chunk_size)
    ])


def coarse_similarity(
    sign: torch.Tensor, sign_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
) -> torch.Tensor:
    """Table XVIII's coarse variant: cosine of the mean valid sign clip and the mean valid text token."""

    def mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)

    return F.normalize(mean(sign, sign_mask), dim=-1) @ F.normalize(mean(text, text_mask), dim=-1).T


class LearnableTemperature(nn.Module):
    """τ of the symmetric InfoNCE (eq. 5), learnt as log τ and clamped to [min, max]."""

    def __init__(self, init: float = 0.07, minimum: float = 0.01, maximum: float = 1.0):
        super().__init__()
        # Shape (1,), not a scalar: DeepSpeed broadcasts parameters as byte views, which 0-dim tensors refuse.
        self.log_temperature = nn.Parameter(torch.full((1,), math.log(init)))
        self.min_log, self.max_log = math.log(minimum), math.log(maximum)

    def forward(self) -> torch.Tensor:
        return self.log_temperature.clamp(self.min_log, self.max_log).exp()[0]


Similarity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def global_infonce(
    similarity: Similarity,
    temperature: torch.Tensor,
    sign: torch.Tensor,
    sign_mask: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor,
    paired: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE at ``temperature`` over the paired samples of the global batch (every rank's), as
    ``(loss, value)``; ``similarity`` scores clips against texts (:func:`fine_grained_similarity` or
    :func:`coarse_similarity`).

    ``value`` is the loss of the whole global batch, detached and the same on every rank. ``loss`` is what this
    rank back-propagates: its share, scaled so that the data-parallel average of the ranks' gradients (DDP,
    DeepSpeed) is exactly the gradient of ``value``, whatever the number of ranks and however the paired samples
    fall on them. Each rank scores its own paired clips against every paired text of the global batch (1/W of the
    B × B similarity work) and all-gathers those rows with their gradient; the rows (clip → text) and columns
    (text → clip) of its own pairs make its share, normalised by the global number of pairs. (open_clip's
    default gathers features without gradient and has every rank compute the whole matrix: the contrastive
    gradient then reaches the weights divided by W.)

    ``sign (b, n, d)``, ``sign_mask (b, n)``, ``text (b, m, d)``, ``text_mask (b, m)``, ``paired (b,)`` are this
    rank's; ranks may hold different ``b``, ``n`` and ``m``. With fewer than two pairs in the global batch there
    are no negatives: both are 0 and the graph still reaches the parameters.
    """
    rank, world = rank_and_world()
    paired = paired.bool()
    if world > 1:  # pad to the global maximum shapes: padding samples are unpaired, padding clips / tokens invalid
        (b, n), (_, m) = max_sizes(sign, text)
        sign, sign_mask = pad_to(sign, (b, n), 0.0), pad_to(sign_mask, (b, n), False)
        text, text_mask, paired = pad_to(text, (b, m), 0.0), pad_to(text_mask, (b, m), False), pad_to(paired, (b,))
    rows = sign.shape[0]
    pairs = all_gather(paired).nonzero().squeeze(1)  # global indices of the paired samples
    if pairs.numel() < 2:
        zero = 0.0 * (sign.sum() + text.sum() + temperature)
        return zero, zero.detach()
    texts = all_gather_with_grad(text)[pairs]
    text_masks = all_gather(text_mask)[pairs]
    mine = paired.nonzero().squeeze(1)
    scores = similarity(sign[mine], sign_mask[mine], texts, text_masks)  # (own pairs, all pairs)
    own_rows = scores.new_zeros(rows, len(pairs)).index_copy(0, mine, scores)
    # (pairs, pairs), clip i → text j; the softmax in float32 under bf16 training
    logits = all_gather_with_grad(own_rows)[pairs].float() / temperature.float()
    labels = torch.arange(len(pairs), device=logits.device)
    own = pairs // rows == rank
    share = (F.cross_entropy(logits[own], labels[own], reduction="sum")
             + F.cross_entropy(logits.T[own], labels[own], reduction="sum"))
    value = (F.cross_entropy(logits.detach(), labels) + F.cross_entropy(logits.detach().T, labels)) / 2
    return share * world / (2 * len(pairs)), value
