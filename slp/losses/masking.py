"""Hierarchical whole-body masking (paper §III-B, after SignBERT+, which masked the hands only).

Three independent masks over the valid frames of each sample, combined by union so the expected masked
fraction of valid joints is ``ratio``:

- joint level: single joints in single frames;
- frame level: every joint of randomly chosen frames;
- clip level: every joint of one contiguous span of frames per sample.

Each level gets the same per-joint probability p with 1 − (1 − p)³ = ratio. All three are drawn as batched
array ops from one numpy generator, so a batch's mask is reproducible and costs no Python loop per sample. The
mask is made loader-side on CPU, where numpy draws random bits several times faster than torch's generator.
"""

from __future__ import annotations

import numpy as np
import torch

from slp.pose.layout import NUM_POINTS

_JOINT_DRAW_RANGE = 1 << 16  # joint-level draws are 16-bit integers: p is used to 1 / 65536


def level_probability(ratio: float, levels: int = 3) -> float:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio {ratio} is not in [0, 1)")
    return 1.0 - (1.0 - ratio) ** (1.0 / levels)


def hierarchical_mask(frame_mask: torch.Tensor, ratio: float, rng: np.random.Generator | None = None) -> torch.Tensor:
    """``(B, T)`` valid-frame mask (CPU) → ``(B, T, 79)`` bool, True = masked; padding frames are never masked."""
    rng = rng if rng is not None else np.random.default_rng()
    valid = frame_mask.numpy()
    b, t = valid.shape
    p = level_probability(ratio)
    # The joint level needs B·T·79 draws: random bytes read as 16-bit integers cost a third of uniform floats.
    joints = np.frombuffer(rng.bytes(2 * b * t * NUM_POINTS), dtype=np.uint16).reshape(b, t, NUM_POINTS)
    joints = joints < round(p * _JOINT_DRAW_RANGE)
    frames = rng.random((b, t)) < p
    # Clip level: one span of round(p * length) frames at a random start inside the valid frames.
    length = valid.sum(axis=1)
    span = np.round(p * length).astype(np.int64)
    start = (rng.random(b) * np.maximum(length - span + 1, 1)).astype(np.int64)
    position = np.arange(t)[None, :]
    clip = (position >= start[:, None]) & (position < (start + span)[:, None])
    return torch.from_numpy((joints | (frames | clip)[..., None]) & valid[..., None])
