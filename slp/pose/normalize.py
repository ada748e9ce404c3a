"""Loader-side normalisation of shard poses (SPEC §1), batched.

Shards keep x / width and y / height so the normalisation can change without re-curation. Here, per batch:
hands are expressed relative to their own per-frame bounding box (a crop, which makes handshape independent of
where the hand is), everything else relative to the frame; both end in [-1, 1]. Confidence passes through and
missing points (confidence 0) stay at 0.
"""

from __future__ import annotations

import torch

from slp.pose.layout import LEFT_HAND, RIGHT_HAND

# The two hands are adjacent in the 79 array: one (..., 2, 21) view normalises both at once.
HANDS = slice(LEFT_HAND.start, RIGHT_HAND.stop)
assert LEFT_HAND.stop == RIGHT_HAND.start and LEFT_HAND.stop - LEFT_HAND.start == RIGHT_HAND.stop - RIGHT_HAND.start


def _hand_frame(x: torch.Tensor, y: torch.Tensor, missing: torch.Tensor):
    """Centre and half side of each hand's square box over its ``21`` points (last dim); unit box if unseen."""
    big = float("inf")
    lo_x, hi_x = x.masked_fill(missing, big).amin(-1, keepdim=True), x.masked_fill(missing, -big).amax(-1, keepdim=True)
    lo_y, hi_y = y.masked_fill(missing, big).amin(-1, keepdim=True), y.masked_fill(missing, -big).amax(-1, keepdim=True)
    seen = ~missing.all(dim=-1, keepdim=True)
    # The larger side keeps the aspect ratio; a hand seen at one point only (side 0) or not at all gets a unit box.
    side = torch.maximum(hi_x - lo_x, hi_y - lo_y)
    half = torch.where(seen & (side > 0), side / 2, 1.0)
    return torch.where(seen, (lo_x + hi_x) / 2, 0.0), torch.where(seen, (lo_y + hi_y) / 2, 0.0), half


def normalize_pose(pose: torch.Tensor) -> torch.Tensor:
    """Shard coordinates ``(..., T, 79, 3)`` → model input of the same shape (float32)."""
    # Work on contiguous x, y, confidence planes: ops on views whose last dimension is 3 are strided copies.
    x, y, conf = pose.float().movedim(-1, 0).contiguous()
    missing = conf <= 0
    hand_x, hand_y = x[..., HANDS].unflatten(-1, (2, -1)), y[..., HANDS].unflatten(-1, (2, -1))
    hand_missing = missing[..., HANDS].unflatten(-1, (2, -1))
    cx, cy, half = _hand_frame(hand_x, hand_y, hand_missing)
    x = x * 2 - 1
    y = y * 2 - 1
    x[..., HANDS] = ((hand_x - cx) / half).flatten(-2)
    y[..., HANDS] = ((hand_y - cy) / half).flatten(-2)
    return torch.stack([x.masked_fill_(missing, 0.0), y.masked_fill_(missing, 0.0), conf], dim=-1)
