"""NLA-SLR (Zuo et al., "Natural Language-Assisted Sign Language Recognition") training signals of the ISLR head.

- Language-aware label smoothing (eq. 2 as corrected in the poster): the ground truth keeps 1 − ε, the other classes
  share ε in proportion to exp(s_i / τ), s = cosine similarity of the gloss embeddings to the ground-truth gloss.
- Inter-modality mixup (eqs. 3-5): the sign feature f plus each mapped gloss embedding e_n is classified by an
  auxiliary classifier FC2 against the label 0.5 · (sign's label) + 0.5 · (class n), averaged over n.
- Classifier integration (eq. 6): FC1 ← μ FC1 + (1 − μ) FC2 every iteration, μ = 1 − (1 − μ_base)(cos(π m / M) + 1) / 2
  rising from μ_base = 0.99 to 1 over the M training iterations, so late in training FC1 follows its own loss.
- Intra-modality mixup (§3.4): two clips and their targets blended with λ ~ Beta(0.8, 0.8); the paper blends RGB
  frames and keypoint heatmaps, a pose system blends the normalised keypoints frame by frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def uniform_smoothing_targets(labels: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
    """Vanilla label smoothing as PyTorch defines it: (1 − ε) one-hot + ε / N on every class."""
    return F.one_hot(labels, num_classes).float() * (1 - epsilon) + epsilon / num_classes


def language_aware_targets(gloss_embeddings: torch.Tensor, labels: torch.Tensor, epsilon: float, temperature: float,
                           candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Soft targets ``(B, N)``: 1 − ε on each label, ε · softmax(s_i / τ) over the other classes i.

    ``gloss_embeddings`` is ``(N, D)``; ``candidates`` (``(N,)`` bool) limits the smoothing mass to the classes
    that have a gloss (a class absent from the training split has none and gets nothing).
    """
    unit = F.normalize(gloss_embeddings.float(), dim=-1)
    similarity = unit[labels] @ unit.T  # (B, N) cosine similarities to the ground-truth gloss
    one_hot = F.one_hot(labels, gloss_embeddings.shape[0]).bool()
    excluded = one_hot if candidates is None else one_hot | ~candidates[None, :]
    weights = (similarity / temperature).masked_fill(excluded, float("-inf")).softmax(dim=-1)
    return one_hot.float() * (1 - epsilon) + epsilon * weights


def inter_modality_mixup_loss(sign_logits: torch.Tensor, gloss_logits: torch.Tensor, targets: torch.Tensor,
                              gloss_classes: torch.Tensor) -> torch.Tensor:
    """L_IMM: mean over samples b and glosses n of CE(FC2(f_b + e_n), 0.5 · targets_b + 0.5 · one-hot(class of n)).

    FC2 is linear, so FC2(f_b + e_n) = FC2(f_b) + W2 e_n: ``sign_logits`` = FC2(f) ``(B, N)`` with the bias and
    ``gloss_logits`` = W2 e ``(G, N)`` without it; the ``(B, G, D)`` blended features are never built.
    ``targets`` ``(B, N)`` are the samples' hard labels (blended by intra-modality mixup when it is on);
    ``gloss_classes`` ``(G,)`` is the class of each gloss row. For n = b the label is the one-hot of b (eq. 3).
    """
    log_p = (sign_logits[:, None, :] + gloss_logits[None, :, :]).float().log_softmax(dim=-1)  # (B, G, N)
    sign_term = torch.einsum("bn,bgn->bg", targets.float(), log_p)
    gloss_term = log_p[:, torch.arange(len(gloss_classes), device=log_p.device), gloss_classes]
    return -(0.5 * sign_term + 0.5 * gloss_term).mean()


def integration_momentum(step: int, total_steps: int, base: float = 0.99) -> float:
    """μ at iteration ``step`` of ``total_steps``: ``base`` at the start, 1 at the end (and after)."""
    progress = min(step, total_steps) / max(total_steps, 1)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def integrate_classifier(main: nn.Linear, auxiliary: nn.Linear, momentum: float) -> None:
    """θ1 ← μ θ1 + (1 − μ) θ2 in place, weights and biases."""
    for theta1, theta2 in ((main.weight, auxiliary.weight), (main.bias, auxiliary.bias)):
        theta1.mul_(momentum).add_(theta2, alpha=1.0 - momentum)


def mix_poses(pose: torch.Tensor, frame_mask: torch.Tensor, partner: torch.Tensor,
              lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Intra-modality mixup of a batch: clip i becomes λ · clip i + (1 − λ) · clip ``partner[i]``, frame by frame.

    ``pose`` ``(B, T, 79, 3)``, ``frame_mask`` ``(B, T)``. A frame only one of the two clips has (the shorter one
    is padded) is taken from that clip as it is rather than blended with padding; the result is as long as the
    longer clip. Blend the targets with the same λ and partner.
    """
    other, other_mask = pose[partner], frame_mask[partner]
    both = (frame_mask & other_mask)[..., None, None]
    own = frame_mask[..., None, None]
    mixed = torch.where(both, lam * pose + (1 - lam) * other, torch.where(own, pose, other))
    return mixed, frame_mask | other_mask
