"""Hierarchical whole-body masking (paper §III-B, after SignBERT+, which masked the hands only).

Three independent masks over the valid frames of each sample, combined by union so the expected masked
fraction of valid joints is ``ratio``:

- joint level: single joints in single frames;
- frame level: every joint of randomly chosen frames;
- clip level: every joint of one contiguous span of frames per sample.

Each level gets the same per-joint probability p with 1 − (1 − p)³ = ratio. All three are drawn as batched
tensor ops from one generator, so a batch's mask is reproducible and costs no Python loop per sample.
"""

from __future__ import annotations

import torch

from slp.pose.layout import NUM_POINTS


def level_probability(ratio: float, levels: int = 3) -> float:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio {ratio} is not in [0, 1)")
    return 1.0 - (1.0 - ratio) ** (1.0 / levels)


def hierarchical_mask(
    frame_mask: torch.Tensor, ratio: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(B, T)`` valid-frame mask → ``(B, T, 79)`` bool, True = masked; padding frames are never masked."""
    b, t = frame_mask.shape
    device = frame_mask.device
    p = level_probability(ratio)

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=device)

    joints = uniform(b, t, NUM_POINTS) < p
    frames = uniform(b, t) < p
    # Clip level: one span of round(p * length) frames at a random start inside the valid frames.
    length = frame_mask.sum(dim=1)
    span = torch.round(p * length.float()).long()
    start = (uniform(b) * (length - span + 1).clamp(min=1).float()).long()
    position = torch.arange(t, device=device)[None, :]
    clip = (position >= start[:, None]) & (position < (start + span)[:, None])
    return (joints | (frames | clip)[..., None]) & frame_mask[..., None]
