"""Fine-grained sign-text contrastive loss L_STC (paper eq. 3-5, SPEC §4).

For sign clips F_sign,i (n × d) and text tokens F_text,j (m × d), both L2-normalised:
Z = F_sign,i F_text,jᵀ (n × m); Ẑ = softmax over each row of Z (valid tokens only) ⊙ Z; m_ij = mean over the
valid rows of the row sums of Ẑ. The B × C matrix of m_ij is computed in chunks of sign samples, each chunk
given an analytic backward that recomputes it, so peak memory is O(chunk · C · n · m) instead of
O(B · C · n · m) with the same values. Negatives come from the global batch: features are gathered from every
rank, keeping the gradient of the local slice (open_clip's convention).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


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


class SymmetricInfoNCE(nn.Module):
    """Symmetric InfoNCE over a square similarity matrix, positives on the diagonal, learnable temperature."""

    def __init__(self, temperature_init: float = 0.07, min_temperature: float = 0.01, max_temperature: float = 1.0):
        super().__init__()
        # Shape (1,), not a scalar: DeepSpeed broadcasts parameters as byte views, which 0-dim tensors refuse.
        self.log_temperature = nn.Parameter(torch.full((1,), math.log(temperature_init)))
        self.min_log, self.max_log = math.log(min_temperature), math.log(max_temperature)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.clamp(self.min_log, self.max_log).exp()[0]

    def forward(self, similarity: torch.Tensor) -> torch.Tensor:
        logits = similarity / self.temperature
        labels = torch.arange(similarity.shape[0], device=similarity.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _pad_to(x: torch.Tensor, sizes: list[int], value: float | bool) -> torch.Tensor:
    pads: list[int] = []
    for dim in reversed(range(x.dim())):
        pads += [0, (sizes[dim] - x.shape[dim]) if dim < len(sizes) else 0]
    return F.pad(x, pads, value=value) if any(pads) else x


def gather_features(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate each tensor over all ranks (batch dim 0); the local slice keeps its gradient.

    Ranks may hold different batch sizes and sequence lengths: every tensor is padded (zeros / False) to the
    global maximum of its first two dimensions first, so masks mark padding as invalid. Without an initialised
    process group (or with one rank) the tensors come back unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    world, rank = dist.get_world_size(), dist.get_rank()
    dims = torch.tensor([[t.shape[d] if d < t.dim() else 0 for d in range(2)] for t in tensors],
                        device=tensors[0].device)
    dist.all_reduce(dims, op=dist.ReduceOp.MAX)
    out = []
    for t, size in zip(tensors, dims.tolist()):
        padded = _pad_to(t, size[: min(2, t.dim())], False if t.dtype == torch.bool else 0.0)
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.detach().contiguous())
        parts[rank] = padded
        out.append(torch.cat(parts))
    return tuple(out)
