"""Loader-side normalisation of shard poses (SPEC §1), batched.

Shards keep x / width and y / height so the normalisation can change without re-curation. Here, per batch:
hands are expressed relative to their own per-frame bounding box (a crop, which makes handshape independent of
where the hand is), everything else relative to the frame; both end in [-1, 1]. Confidence passes through and
missing points (confidence 0) stay at 0.
"""

from __future__ import annotations

import torch

from slp.pose.layout import LEFT_HAND, RIGHT_HAND


def _normalize_hand(hand: torch.Tensor) -> torch.Tensor:
    """``(..., 21, 3)`` → coordinates in the hand's square box, centred, in [-1, 1]; missing points at 0."""
    xy, conf = hand[..., :2], hand[..., 2:]
    valid = conf > 0
    big = torch.finfo(xy.dtype).max
    lo = torch.where(valid, xy, torch.full_like(xy, big)).amin(dim=-2, keepdim=True)
    hi = torch.where(valid, xy, torch.full_like(xy, -big)).amax(dim=-2, keepdim=True)
    any_valid = valid.any(dim=-2, keepdim=True)
    center = torch.where(any_valid, (lo + hi) / 2, torch.zeros_like(lo))
    # The larger side keeps the aspect ratio; a single detected point (side 0) gets a unit box.
    side = torch.where(any_valid, (hi - lo).amax(dim=-1, keepdim=True), torch.ones_like(lo[..., :1]))
    side = torch.where(side > 0, side, torch.ones_like(side))
    scaled = (xy - center) / (side / 2)
    return torch.cat([torch.where(valid, scaled, torch.zeros_like(scaled)), conf], dim=-1)


def normalize_pose(pose: torch.Tensor) -> torch.Tensor:
    """Shard coordinates ``(..., T, 79, 3)`` → model input of the same shape (float32)."""
    pose = pose.float()
    xy, conf = pose[..., :2], pose[..., 2:]
    frame_xy = torch.where(conf > 0, xy * 2 - 1, torch.zeros_like(xy))
    out = torch.cat([frame_xy, conf], dim=-1)
    out[..., LEFT_HAND, :] = _normalize_hand(pose[..., LEFT_HAND, :])
    out[..., RIGHT_HAND, :] = _normalize_hand(pose[..., RIGHT_HAND, :])
    return out
